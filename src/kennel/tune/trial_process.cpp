#include "kennel/tune/trial_process.h"

#include <fstream>

namespace kennel::tune {

std::vector<std::string> LineTailer::read_new_lines() {
  std::vector<std::string> lines;
  std::ifstream in(path_, std::ios::binary);
  if (!in) return lines;
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(in.tellg());
  if (size < offset_) {  // rewritten from the start (a re-run)
    offset_ = 0;
    partial_.clear();
  }
  if (size == offset_) return lines;
  in.seekg(static_cast<std::streamoff>(offset_));
  std::string chunk(size - offset_, '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<size_t>(in.gcount()));
  offset_ += chunk.size();
  partial_ += chunk;
  size_t start = 0;
  while (true) {
    const size_t newline = partial_.find('\n', start);
    if (newline == std::string::npos) break;
    std::string line = partial_.substr(start, newline - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
    start = newline + 1;
  }
  partial_.erase(0, start);
  return lines;
}

std::string last_lines(const std::filesystem::path& path, size_t count) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    lines.push_back(line);
    if (lines.size() > count) lines.erase(lines.begin());
  }
  std::string out;
  for (const auto& item : lines) out += (out.empty() ? "" : " | ") + item;
  if (out.size() > 600) out = "..." + out.substr(out.size() - 600);
  return out;
}

}  // namespace kennel::tune
