#include "kennel/job/s3_output.h"

#include <spdlog/spdlog.h>

#include "kennel/data/s3_sync.h"
#include "kennel/util/fs.h"

namespace kennel::job {

namespace fs = std::filesystem;

namespace {

// The regular files directly inside `dir` (not below), as one set.
std::vector<data::CommittedFile> files_in(const fs::path& dir) {
  std::vector<data::CommittedFile> files;
  std::error_code error;
  for (auto it = fs::directory_iterator(dir, error); !error && it != fs::directory_iterator();
       it.increment(error)) {
    const std::string name = it->path().filename().string();
    // Temporaries of atomic writes and lock files are not part of the set.
    if (!it->is_regular_file() || name.empty() || name[0] == '.' || name.ends_with(".lock") ||
        name.ends_with(".tmp")) {
      continue;
    }
    files.push_back({it->path(), name});
  }
  return files;
}

class CheckpointUploader : public train::TrainerCallback {
 public:
  CheckpointUploader(const S3JobOutput& output, store::JobPaths paths) : output_(output), paths_(std::move(paths)) {}
  void on_epoch_end(train::Trainer&, const train::EpochResult&) override { upload(); }
  void on_train_end(train::Trainer&, const train::TrainOutcome&) override { upload(); }

 private:
  void upload() {
    Status status = output_.upload_checkpoints(paths_);
    if (!status.ok()) {
      spdlog::warn("checkpoint not uploaded to {} (tried again at the next one): {}", output_.job_uri(),
                   status.message());
    }
  }
  const S3JobOutput& output_;
  store::JobPaths paths_;
};

}  // namespace

Result<std::shared_ptr<S3JobOutput>> S3JobOutput::open(const std::string& uri, const std::string& job_name) {
  auto location = s3::parse_s3_uri(uri);
  if (!location.ok()) return location.status().with_context("--output");
  auto client = s3::make_s3_client(s3::command_line_options());
  if (!client.ok()) return client.status().with_context(fmt::format("--output {}", uri));
  s3::S3Uri job{location->bucket, data::folder_prefix(location->key) + job_name + "/"};
  return std::shared_ptr<S3JobOutput>(new S3JobOutput(std::move(*client), std::move(job)));
}

std::string S3JobOutput::job_uri() const { return job_.text(); }

s3::S3Uri S3JobOutput::folder_of(const fs::path& job_relative) const {
  return {job_.bucket, job_.key + job_relative.generic_string()};
}

Status S3JobOutput::upload_spec(const store::JobPaths& paths) const {
  auto text = read_file_text(paths.spec());
  if (!text.ok()) return text.status();
  const fs::path relative = paths.spec().lexically_relative(paths.dir);
  s3::PutOptions put;
  put.content_type = "application/json";
  auto written = client_->put_object(folder_of(relative), *text, put);
  if (!written.ok()) return written.status().with_context("storing the job's spec");
  return Status::ok_status();
}

Status S3JobOutput::upload_checkpoints(const store::JobPaths& paths) const {
  const auto files = files_in(paths.checkpoints());
  if (files.empty()) return Status::ok_status();
  data::S3TransferOptions options;
  options.quiet = true;
  return data::upload_committed_set(*client_, folder_of(paths.checkpoints().lexically_relative(paths.dir)), files,
                                    options);
}

Status S3JobOutput::upload_final(const store::JobPaths& paths) const {
  data::S3TransferOptions options;
  options.quiet = true;
  std::error_code error;
  if (fs::is_directory(paths.model(), error)) {
    KENNEL_RETURN_IF_ERROR(data::upload_committed_set(
        *client_, folder_of(paths.model().lexically_relative(paths.dir)), files_in(paths.model()), options));
  }
  std::vector<data::CommittedFile> records;
  for (const fs::path& record : {paths.spec(), paths.log(), paths.metrics()}) {
    if (fs::is_regular_file(record, error)) records.push_back({record, record.lexically_relative(paths.dir).generic_string()});
  }
  return data::upload_committed_set(*client_, job_, records, options);
}

Result<std::string> S3JobOutput::read_spec() const {
  const store::JobPaths relative{fs::path()};
  const s3::S3Uri spec = folder_of(relative.spec().relative_path());
  auto got = client_->get_object(spec);
  if (!got.ok()) {
    if (got.status().code() == ErrorCode::kNotFound) {
      return not_found("{} has no job spec: no job of that name ever wrote its output there ({})", job_uri(),
                       got.status().message());
    }
    return got.status();
  }
  return std::move(got->body);
}

Status S3JobOutput::restore_checkpoints(const store::JobPaths& paths, const store::S3CachePaths& cache) const {
  const s3::S3Uri folder = folder_of(paths.checkpoints().lexically_relative(paths.dir));
  // Checkpoint files without a manifest were never committed (the job died uploading its first set).
  auto manifest = client_->head_object(s3::S3Uri{folder.bucket, data::folder_prefix(folder.key) + data::kManifestName});
  if (!manifest.ok()) return manifest.status().with_context("looking for a committed checkpoint");
  data::S3TransferOptions options;
  auto synced = data::sync_prefix(*client_, folder, cache.objects(), paths.checkpoints(), options);
  if (!synced.ok()) return synced.status().with_context("restoring the checkpoints");
  spdlog::info("restored {} checkpoint files from {} ({} downloaded)", synced->identities.size(), job_uri(),
               synced->downloaded);
  return Status::ok_status();
}

std::shared_ptr<train::TrainerCallback> S3JobOutput::checkpoint_uploader(store::JobPaths paths) const {
  return std::make_shared<CheckpointUploader>(*this, std::move(paths));
}

}  // namespace kennel::job
