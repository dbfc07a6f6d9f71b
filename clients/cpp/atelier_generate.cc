// atelier-generate: one job through the C++ client, as an engine plugin would run it.
//
//   atelier-generate --prompt TEXT --out FILE.png [--style NAME] [--model NAME] [--seed N]...
//                    [--steps N] [--sampler NAME] [--preview-every N] [--timeout SECONDS]
//   atelier-generate --watch JOB_ID [--after EVENT_ID] --out FILE.png
//   atelier-generate --models
//
// The gateway is --address or $ATELIER_GATEWAY (default 127.0.0.1:50051), the key --api-key or
// $ATELIER_API_KEY. Prints one line per event (`queued ID`, `progress ID STEP/TOTAL`,
// `artifact ID INDEX SEED WxH PATH`, `finished ID STATE`) and `resume JOB after ID (CODE: MESSAGE)`
// when a dropped stream is resumed. Exit status as the `atelier` command's (docs/API.md, "Python"):
// 0 succeeded, 1 the job did not succeed, 2 a bad argument or request, 3 auth, 4 unknown job,
// 5 overloaded, 6 unreachable.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "atelier_client.h"

namespace {

namespace v1 = atelier::v1;

constexpr char kUsage[] =
    "usage: atelier-generate --prompt TEXT --out FILE.png [--style NAME] [--model NAME] [--seed N]...\n"
    "                        [--steps N] [--sampler NAME] [--preview-every N] [--timeout SECONDS]\n"
    "       atelier-generate --watch JOB_ID [--after EVENT_ID] --out FILE.png\n"
    "       atelier-generate --models\n"
    "common: [--address HOST:PORT] (or $ATELIER_GATEWAY) [--api-key KEY] (or $ATELIER_API_KEY)\n";

[[noreturn]] void Usage(const std::string& problem) {
  std::cerr << "atelier-generate: " << problem << "\n" << kUsage;
  std::exit(2);
}

unsigned long long Whole(const std::string& flag, const std::string& text, unsigned long long most) {
  std::size_t used = 0;
  unsigned long long value = 0;
  bool ok = !text.empty() && std::isdigit(static_cast<unsigned char>(text[0]));
  try {
    if (ok) value = std::stoull(text, &used);
  } catch (const std::exception&) {
    ok = false;
  }
  if (!ok || used != text.size() || value > most) {
    Usage("argument " + flag + ": '" + text + "': expected a whole number from 0 to " + std::to_string(most));
  }
  return value;
}

v1::Sampler SamplerNamed(const std::string& name) {
  std::string full = "SAMPLER_";
  for (char c : name) full += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  v1::Sampler sampler;
  if (name.empty() || !v1::Sampler_Parse(full, &sampler) || sampler == v1::SAMPLER_UNSPECIFIED) {
    Usage("argument --sampler: unknown sampler '" + name + "' (euler, heun, ddim, dpmpp_2m, unipc, lcm, ...)");
  }
  return sampler;
}

int ExitStatus(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::OK: return 0;
    case grpc::StatusCode::INVALID_ARGUMENT: return 2;
    case grpc::StatusCode::UNAUTHENTICATED: return 3;
    case grpc::StatusCode::NOT_FOUND: return 4;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return 5;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED: return 6;
    default: return 1;
  }
}

// Image `index` of a job of `images`: OUT itself for one image, else OUT with -INDEX before its extension.
std::string OutputPath(const std::string& out, unsigned index, int images) {
  if (images <= 1) return out;
  const auto dot = out.find_last_of('.');
  const auto slash = out.find_last_of('/');
  const bool has_extension = dot != std::string::npos && (slash == std::string::npos || dot > slash);
  const std::string stem = has_extension ? out.substr(0, dot) : out;
  return stem + "-" + std::to_string(index) + (has_extension ? out.substr(dot) : "");
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> flags;
  std::vector<unsigned long long> seeds;
  bool list_models = false;
  const std::vector<std::string> valued = {"--address", "--api-key", "--prompt", "--style", "--model", "--steps",
                                           "--sampler", "--preview-every", "--timeout", "--out", "--watch",
                                           "--after"};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--models") {
      list_models = true;
      continue;
    }
    const bool is_seed = arg == "--seed";
    if (!is_seed && std::find(valued.begin(), valued.end(), arg) == valued.end()) Usage("unknown argument " + arg);
    if (i + 1 >= argc) Usage("argument " + arg + ": expected a value");
    const std::string value = argv[++i];
    if (is_seed) {
      seeds.push_back(Whole("--seed", value, ~0ULL));
    } else {
      flags[arg] = value;
    }
  }
  auto flag = [&](const std::string& name, const char* env, const std::string& fallback) {
    if (flags.count(name)) return flags[name];
    const char* from_env = env ? std::getenv(env) : nullptr;
    return std::string(from_env && *from_env ? from_env : fallback);
  };

  atelier::ClientOptions options;
  options.address = flag("--address", "ATELIER_GATEWAY", "127.0.0.1:50051");
  options.api_key = flag("--api-key", "ATELIER_API_KEY", "");
  if (options.api_key.empty()) Usage("no API key: give --api-key or set ATELIER_API_KEY");
  if (flags.count("--timeout")) options.deadline = std::chrono::seconds(Whole("--timeout", flags["--timeout"], 86400));
  atelier::Client client(options);

  if (list_models) {
    v1::ListModelsResponse models;
    const grpc::Status status = client.ListModels(&models);
    if (!status.ok()) {
      std::cerr << "atelier-generate: ListModels: " << status.error_message() << "\n";
      return ExitStatus(status);
    }
    for (const auto& m : models.models()) {
      std::cout << m.name() << "/" << m.version() << " " << m.width() << "x" << m.height() << " styles:";
      for (const auto& style : m.styles()) std::cout << " " << style;
      std::cout << (m.ready() ? " ready" : " not-ready") << "\n";
    }
    return 0;
  }

  const std::string out = flags["--out"];
  if (out.empty()) Usage("argument --out: required");
  v1::GenerateRequest request;
  if (!flags.count("--watch")) {
    request.set_prompt(flags["--prompt"]);
    if (request.prompt().empty()) Usage("argument --prompt: required (or --watch JOB_ID)");
    request.set_style(flags["--style"]);
    request.set_model(flags["--model"]);
    if (flags.count("--steps")) request.set_steps(Whole("--steps", flags["--steps"], 0xffffffffULL));
    if (flags.count("--sampler")) request.set_sampler(SamplerNamed(flags["--sampler"]));
    if (flags.count("--preview-every")) {
      request.set_preview_every_steps(Whole("--preview-every", flags["--preview-every"], 0xffffffffULL));
    }
    for (auto seed : seeds) request.add_seeds(seed);
  }
  const int images = std::max(1, request.seeds_size());

  bool wrote = false;
  grpc::Status file_error = grpc::Status::OK;
  auto on_event = [&](const v1::JobEvent& event) {
    switch (event.event_case()) {
      case v1::JobEvent::kQueued:
        std::cout << "queued " << event.id() << " " << event.job_id() << "\n";
        break;
      case v1::JobEvent::kStarted:
        std::cout << "started " << event.id() << " attempt " << event.started().attempt() << "\n";
        break;
      case v1::JobEvent::kProgress:
        std::cout << "progress " << event.id() << " " << event.progress().step() << "/"
                  << event.progress().total_steps() << "\n";
        break;
      case v1::JobEvent::kPreview:
        std::cout << "preview " << event.id() << " step " << event.preview().step() << "\n";
        break;
      case v1::JobEvent::kArtifact: {
        const auto& artifact = event.artifact();
        const std::string path = OutputPath(out, artifact.index(), images);
        std::ofstream file(path, std::ios::binary | std::ios::trunc);
        file.write(artifact.data().data(), static_cast<std::streamsize>(artifact.data().size()));
        if (!file) file_error = grpc::Status(grpc::StatusCode::UNKNOWN, "cannot write " + path);
        wrote = wrote || static_cast<bool>(file);
        std::cout << "artifact " << event.id() << " " << artifact.index() << " " << artifact.seed() << " "
                  << artifact.width() << "x" << artifact.height() << " " << path << "\n";
        break;
      }
      case v1::JobEvent::kFinished:
        std::cout << "finished " << event.id() << " " << v1::JobState_Name(event.finished().state()) << "\n";
        if (!event.finished().error_message().empty()) std::cerr << event.finished().error_message() << "\n";
        break;
      default:
        std::cout << "event " << event.id() << "\n";  // a kind newer than this program
    }
    std::cout.flush();
  };
  auto on_resume = [](const std::string& job_id, const std::string& after, const grpc::Status& why) {
    std::cout << "resume " << job_id << " after " << after << " (" << why.error_code() << ": " << why.error_message()
              << ")" << std::endl;
  };

  const atelier::JobOutcome outcome = flags.count("--watch")
                                          ? client.Watch(flags["--watch"], flags["--after"], on_event, on_resume)
                                          : client.Generate(request, on_event, on_resume);
  if (!outcome.status.ok()) {
    std::cerr << "atelier-generate: " << outcome.status.error_message() << "\n";
    if (!outcome.job_id.empty()) {
      std::cerr << "resume with: atelier-generate --watch " << outcome.job_id << " --after " << outcome.last_event_id
                << " --out " << out << "\n";
    }
    return ExitStatus(outcome.status);
  }
  if (!file_error.ok()) {
    std::cerr << "atelier-generate: " << file_error.error_message() << "\n";
    return 1;
  }
  return outcome.finished.state() == v1::JOB_STATE_SUCCEEDED && wrote ? 0 : 1;
}
