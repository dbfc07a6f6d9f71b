// Atelier's C++ client: the calls a game engine (Unreal) makes, on the stubs generated from
// proto/atelier/v1/*.proto. Every call carries `authorization: Bearer <api key>`; a job's event
// stream that drops is resumed with Watch from the last event handled (docs/API.md, "Resuming a
// stream"), so each event reaches the handler exactly once, in order.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "atelier/v1/generation.grpc.pb.h"
#include "atelier/v1/models.grpc.pb.h"

namespace atelier {

namespace v1 = ::atelier::v1;

struct ClientOptions {
  std::string address = "127.0.0.1:50051";
  std::string api_key;
  // The whole job, every resume included.
  std::chrono::seconds deadline{300};
  // Resumes after drops before giving up, with exponential backoff between them.
  int max_resumes = 8;
  std::chrono::milliseconds first_backoff{200};
  std::chrono::milliseconds max_backoff{5000};
};

// Every event of the job, in log order, each once across resumes.
using EventHandler = std::function<void(const v1::JobEvent&)>;
// Told before each resume: the job, the last event handled, and why the stream ended.
using ResumeHandler =
    std::function<void(const std::string& job_id, const std::string& after_event_id, const grpc::Status& why)>;

struct JobOutcome {
  grpc::Status status;  // OK once the finished event arrived; else the last stream's status
  std::string job_id;
  std::string last_event_id;
  v1::Finished finished;  // set when status is OK
  int resumes = 0;
};

class Client {
 public:
  explicit Client(ClientOptions options);

  grpc::Status ListModels(v1::ListModelsResponse* response);
  grpc::Status Submit(const v1::GenerateRequest& request, v1::JobHandle* handle);
  grpc::Status Cancel(const std::string& job_id, v1::CancelJobResponse* response);

  // Submits and follows the job to its finished event. A request without request_id gets one,
  // so a Generate retried before its first event returns the same job instead of a second one.
  JobOutcome Generate(v1::GenerateRequest request, const EventHandler& on_event,
                      const ResumeHandler& on_resume = {});
  // Follows an existing job from after_event_id (empty: from its first event).
  JobOutcome Watch(const std::string& job_id, const std::string& after_event_id, const EventHandler& on_event,
                   const ResumeHandler& on_resume = {});

 private:
  JobOutcome Follow(const v1::GenerateRequest* request, JobOutcome outcome, const EventHandler& on_event,
                    const ResumeHandler& on_resume);
  void Authorize(grpc::ClientContext* context) const;

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Generation::Stub> generation_;
  std::unique_ptr<v1::Models::Stub> models_;
};

// A stream that ended this way is resumed: the connection dropped, or the gateway shut down.
bool Resumable(const grpc::Status& status);

}  // namespace atelier
