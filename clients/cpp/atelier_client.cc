#include "atelier_client.h"

#include <algorithm>
#include <random>
#include <thread>

namespace atelier {

namespace {

// An artifact of a 1024x1024 raw RGBA image is 4 MiB, gRPC's default receive limit (docs/API.md).
constexpr int kMaxReceiveBytes = 256 * 1024 * 1024;

std::string RandomRequestId() {
  std::random_device entropy;
  std::uniform_int_distribution<int> hex(0, 15);
  std::string id = "cpp-";
  for (int i = 0; i < 32; ++i) id += "0123456789abcdef"[hex(entropy)];
  return id;
}

}  // namespace

bool Resumable(const grpc::Status& status) {
  return status.error_code() == grpc::StatusCode::UNAVAILABLE || status.error_code() == grpc::StatusCode::CANCELLED;
}

Client::Client(ClientOptions options) : options_(std::move(options)) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(kMaxReceiveBytes);
  channel_ = grpc::CreateCustomChannel(options_.address, grpc::InsecureChannelCredentials(), arguments);
  generation_ = v1::Generation::NewStub(channel_);
  models_ = v1::Models::NewStub(channel_);
}

void Client::Authorize(grpc::ClientContext* context) const {
  context->AddMetadata("authorization", "Bearer " + options_.api_key);
}

grpc::Status Client::ListModels(v1::ListModelsResponse* response) {
  grpc::ClientContext context;
  Authorize(&context);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return models_->ListModels(&context, v1::ListModelsRequest(), response);
}

grpc::Status Client::Submit(const v1::GenerateRequest& request, v1::JobHandle* handle) {
  grpc::ClientContext context;
  Authorize(&context);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  return generation_->Submit(&context, request, handle);
}

grpc::Status Client::Cancel(const std::string& job_id, v1::CancelJobResponse* response) {
  grpc::ClientContext context;
  Authorize(&context);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  return generation_->CancelJob(&context, request, response);
}

JobOutcome Client::Generate(v1::GenerateRequest request, const EventHandler& on_event,
                            const ResumeHandler& on_resume) {
  if (request.request_id().empty()) request.set_request_id(RandomRequestId());
  return Follow(&request, JobOutcome{}, on_event, on_resume);
}

JobOutcome Client::Watch(const std::string& job_id, const std::string& after_event_id, const EventHandler& on_event,
                         const ResumeHandler& on_resume) {
  JobOutcome outcome;
  outcome.job_id = job_id;
  outcome.last_event_id = after_event_id;
  return Follow(nullptr, std::move(outcome), on_event, on_resume);
}

JobOutcome Client::Follow(const v1::GenerateRequest* request, JobOutcome outcome, const EventHandler& on_event,
                          const ResumeHandler& on_resume) {
  const auto deadline = std::chrono::system_clock::now() + options_.deadline;
  auto backoff = options_.first_backoff;
  for (;;) {
    grpc::ClientContext context;
    Authorize(&context);
    context.set_deadline(deadline);
    context.set_wait_for_ready(true);  // a resume waits for the gateway to come back, up to the deadline
    std::unique_ptr<grpc::ClientReader<v1::JobEvent>> stream;
    if (outcome.job_id.empty()) {
      stream = generation_->Generate(&context, *request);
    } else {
      v1::WatchRequest watch;
      watch.set_job_id(outcome.job_id);
      watch.set_after_event_id(outcome.last_event_id);
      stream = generation_->Watch(&context, watch);
    }
    bool finished = false;
    v1::JobEvent event;
    while (stream->Read(&event)) {
      outcome.job_id = event.job_id();
      outcome.last_event_id = event.id();
      if (event.has_finished()) {
        outcome.finished = event.finished();
        finished = true;
      }
      on_event(event);
    }
    grpc::Status status = stream->Finish();
    if (finished) {
      outcome.status = grpc::Status::OK;
      return outcome;
    }
    if (status.ok()) {  // the log ended without its finished event: the stream was cut short
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the stream ended before the job's finished event");
    }
    if (!Resumable(status) || outcome.resumes >= options_.max_resumes ||
        std::chrono::system_clock::now() + backoff >= deadline) {
      outcome.status = status;
      return outcome;
    }
    // Before the first event there is no job id to watch: Generate again, whose request_id
    // returns the job the first call made, if it made one.
    if (on_resume && !outcome.job_id.empty()) on_resume(outcome.job_id, outcome.last_event_id, status);
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
    ++outcome.resumes;
  }
}

}  // namespace atelier
