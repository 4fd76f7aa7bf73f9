// ctest (built with the TensorRT plugin): creator fields, createPlugin validation and the
// serialization round trip getFieldsToSerialize -> createPlugin of both plugins (SelectiveScan,
// SS2DScan), without TensorRT's runtime.
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "selectiveScanPlugin.h"
#include "ss2dScanPlugin.h"
#include "test_check.h"

using namespace nvinfer1;

namespace {

using test_check::check;
using test_check::failures;

int32_t fieldValue(PluginFieldCollection const* fc, char const* name) {
  for (int32_t i = 0; i < fc->nbFields; ++i)
    if (std::strcmp(fc->fields[i].name, name) == 0 && fc->fields[i].type == PluginFieldType::kINT32)
      return *static_cast<int32_t const*>(fc->fields[i].data);
  return -100;
}

using Values = std::vector<std::pair<char const*, int32_t>>;

bool holds(PluginFieldCollection const* fc, Values const& values) {
  for (auto const& [name, value] : values)
    if (fieldValue(fc, name) != value) return false;
  return true;
}

// The creator's identity and field list, createPlugin with `values` as kINT32 fields, and the round trip
// getFieldsToSerialize -> createPlugin -> getFieldsToSerialize keeping every value. Returns the plugin.
std::unique_ptr<IPluginV3> checkCreateAndRoundTrip(IPluginCreatorV3One& creator, char const* name, char const* node,
                                                   Values values) {
  const std::string op = name;
  check(std::string(creator.getPluginName()) == name, (op + ": plugin name").c_str());
  check(std::string(creator.getPluginVersion()) == "1", (op + ": plugin version").c_str());
  check(std::string(creator.getPluginNamespace()) == "remamber", (op + ": plugin namespace").c_str());
  PluginFieldCollection const* declared = creator.getFieldNames();
  bool sameFields = declared->nbFields == static_cast<int32_t>(values.size());
  for (int32_t i = 0; sameFields && i < declared->nbFields; ++i)
    sameFields = std::strcmp(declared->fields[i].name, values[i].first) == 0;
  check(sameFields, (op + ": the declared fields, in order").c_str());

  std::vector<PluginField> fields;
  for (auto& [field, value] : values) fields.emplace_back(field, &value, PluginFieldType::kINT32, 1);
  PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
  std::unique_ptr<IPluginV3> plugin(creator.createPlugin(node, &fc, TensorRTPhase::kBUILD));
  check(plugin != nullptr, (op + ": createPlugin with valid fields").c_str());
  if (!plugin) return plugin;
  auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
  PluginFieldCollection const* saved = runtime->getFieldsToSerialize();
  check(holds(saved, values), (op + ": serialized fields hold the attribute values").c_str());
  std::unique_ptr<IPluginV3> restored(creator.createPlugin(node, saved, TensorRTPhase::kRUNTIME));
  check(restored != nullptr, (op + ": createPlugin from serialized fields").c_str());
  if (restored) {
    auto* rt2 = static_cast<IPluginV3OneRuntime*>(restored->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check(holds(rt2->getFieldsToSerialize(), values), (op + ": round trip keeps every field").c_str());
  }
  std::unique_ptr<IPluginV3> copy(plugin->clone());
  check(copy != nullptr, (op + ": clone").c_str());
  return plugin;
}

// createPlugin with one field must be refused.
void checkRefused(IPluginCreatorV3One& creator, char const* field, PluginFieldType type, void const* data,
                  char const* what) {
  std::vector<PluginField> fields{{field, data, type, 1}};
  PluginFieldCollection fc{1, fields.data()};
  check(creator.createPlugin("bad", &fc, TensorRTPhase::kBUILD) == nullptr, what);
}

}  // namespace

int main() {
  remamber::trt::SelectiveScanPluginCreator creator;
  std::unique_ptr<IPluginV3> plugin = checkCreateAndRoundTrip(
      creator, "SelectiveScan", "scan0", {{"delta_softplus", 0}, {"has_D", 1}, {"has_delta_bias", 0}});
  if (plugin) {
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    DataType in[6] = {DataType::kHALF, DataType::kHALF, DataType::kFLOAT, DataType::kHALF, DataType::kHALF, DataType::kFLOAT};
    DataType out = DataType::kINT8;
    check(build->getOutputDataTypes(&out, 1, in, 6) == 0 && out == DataType::kFLOAT, "fp16 inputs give a float32 output");
    in[2] = DataType::kHALF;  // A not float32
    check(build->getOutputDataTypes(&out, 1, in, 6) != 0, "A float16 refused");
    check(build->getOutputDataTypes(&out, 1, in, 4) != 0, "4 inputs refused");
    check(build->getNbOutputs() == 1, "one output");
  }
  const int32_t seven = 7, two = 2, one = 1;
  const float f = 1.0f;
  checkRefused(creator, "delta_softplus", PluginFieldType::kINT32, &seven, "delta_softplus=7 refused");
  checkRefused(creator, "delta_softpls", PluginFieldType::kINT32, &one, "unknown field refused");
  checkRefused(creator, "has_D", PluginFieldType::kFLOAT32, &f, "float field refused");

  // SS2DScan: the same machinery (plugins/common/trt_scan_plugin.h) with four fields, layout first.
  remamber::trt::SS2DScanPluginCreator ss2d;
  std::unique_ptr<IPluginV3> ss2dPlugin = checkCreateAndRoundTrip(
      ss2d, "SS2DScan", "ss2d0", {{"layout", 1}, {"delta_softplus", 0}, {"has_D", 0}, {"has_delta_bias", 1}});
  if (ss2dPlugin) {
    auto* build = static_cast<IPluginV3OneBuild*>(ss2dPlugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    DataType in[6] = {DataType::kBF16, DataType::kBF16, DataType::kFLOAT, DataType::kBF16, DataType::kBF16, DataType::kFLOAT};
    DataType out = DataType::kINT8;
    check(build->getOutputDataTypes(&out, 1, in, 6) == 0 && out == DataType::kFLOAT, "SS2DScan bf16 inputs give float32");
    check(build->getOutputDataTypes(&out, 1, in, 7) != 0, "SS2DScan 7 inputs refused with has_D=0 has_delta_bias=1");
  }
  checkRefused(ss2d, "layout", PluginFieldType::kINT32, &two, "SS2DScan layout=2 refused");
  checkRefused(ss2d, "delta_softpls", PluginFieldType::kINT32, &one, "SS2DScan unknown field refused");

  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("plugin fields, validation and serialization round trip: all checks passed\n");
  return 0;
}
