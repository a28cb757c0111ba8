// A training job's outputs in S3 (`--output s3://BUCKET/PREFIX`), the cloud's
// "output path" and "checkpoint location": what the job directory holds, also
// under PREFIX/NAME/ with the same layout (store/layout.h's JobPaths):
//
//   PREFIX/NAME/spec.json                 uploaded when the job starts
//   PREFIX/NAME/checkpoints/...           uploaded after every checkpoint is written
//   PREFIX/NAME/model/...                 uploaded when the job completes
//   PREFIX/NAME/{log.txt, metrics.jsonl, spec.json}  the job's records, at the end
//
// Each set (checkpoints, model, records) is committed by a manifest written
// last (data/s3_sync.h), so a reader never mixes a half-uploaded set with the
// previous one. With the spec stored there, `kennel train --resume NAME
// --output s3://...` on a machine whose home has never seen the job restores
// the spec and the last committed checkpoint and continues (managed spot
// training).
//
// Failed uploads of checkpoints are logged and retried at the next one (the
// job goes on); a failed final upload fails the job with S3's message.
// Thread-safety: one per job, used from the training thread.
#pragma once

#include <memory>
#include <string>

#include "kennel/s3/client.h"
#include "kennel/store/layout.h"
#include "kennel/train/trainer.h"
#include "kennel/util/status.h"

namespace kennel::job {

class S3JobOutput {
 public:
  // kInvalidArgument for a URI that is not s3://BUCKET/..., the AWS chain's errors.
  static Result<std::shared_ptr<S3JobOutput>> open(const std::string& uri, const std::string& job_name);

  // "s3://BUCKET/PREFIX/NAME/"
  std::string job_uri() const;
  Status upload_spec(const store::JobPaths& paths) const;
  // The checkpoint directory as it is now, committed as one set.
  Status upload_checkpoints(const store::JobPaths& paths) const;
  // model/ (when it exists) and the job's records, each committed.
  Status upload_final(const store::JobPaths& paths) const;

  // For a resume in a home without the job: the stored spec.json's text.
  // kNotFound naming the URI when the job was never written there.
  Result<std::string> read_spec() const;
  // The last committed checkpoint set, placed in paths.checkpoints() through
  // the home's S3 cache. kNotFound when none was committed.
  Status restore_checkpoints(const store::JobPaths& paths, const store::S3CachePaths& cache) const;

  // Uploads the checkpoints after each one the Checkpointer writes (attach it after the Checkpointer).
  std::shared_ptr<train::TrainerCallback> checkpoint_uploader(store::JobPaths paths) const;

 private:
  S3JobOutput(std::unique_ptr<s3::S3Client> client, s3::S3Uri job)
      : client_(std::move(client)), job_(std::move(job)) {}
  // The job-relative path of a JobPaths entry (its layout, relative to the job directory).
  s3::S3Uri folder_of(const std::filesystem::path& job_relative) const;

  std::shared_ptr<const s3::S3Client> client_;
  s3::S3Uri job_;  // key ends with '/'
};

}  // namespace kennel::job
