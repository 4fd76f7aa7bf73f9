// Library entry points looked up by TensorRT: getCreators (IPluginRegistry::loadLibrary,
// trtexec --dynamicPlugins) and setLoggerFinder (gives the plugin TensorRT's logger).
#include <NvInferRuntime.h>

#include <atomic>
#include <cstdio>
#include <exception>
#include <string>

#include "selectiveScanPlugin.h"
#include "ss2dScanPlugin.h"

#define REMAMBER_EXPORT extern "C" __attribute__((visibility("default")))

namespace remamber {
namespace trt {
namespace {

std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

void log(nvinfer1::ILogger::Severity severity, std::string const& message) noexcept {
  nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
  nvinfer1::ILogger* logger = finder ? finder->findLogger() : nullptr;
  if (logger) {
    logger->log(severity, message.c_str());
  } else {
    // No logger: TensorRT-RTX 1.7's finder returns none, for one. stderr keeps the message visible.
    std::fprintf(stderr, "[%s] %s\n", severity == nvinfer1::ILogger::Severity::kERROR ? "E" : "W", message.c_str());
  }
}

}  // namespace

void reportError(std::string const& message) noexcept { log(nvinfer1::ILogger::Severity::kERROR, message); }
void reportWarning(std::string const& message) noexcept { log(nvinfer1::ILogger::Severity::kWARNING, message); }

}  // namespace trt
}  // namespace remamber

REMAMBER_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) { remamber::trt::gLoggerFinder.store(finder); }

REMAMBER_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  // A C entry point: no exception may cross it (the creators allocate their field lists).
  try {
    static remamber::trt::SelectiveScanPluginCreator creator;
    static remamber::trt::SS2DScanPluginCreator ss2dCreator;  // plugins/ss2dScanPlugin/
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&creator, &ss2dCreator};
    nbCreators = 2;
    return creators;
  } catch (std::exception const& e) {
    remamber::trt::reportError(std::string("remamber plugin library: getCreators failed: ") + e.what());
  } catch (...) {
    remamber::trt::reportError("remamber plugin library: getCreators failed: unknown exception");
  }
  nbCreators = 0;
  return nullptr;
}
