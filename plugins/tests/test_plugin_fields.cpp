// ctest (built with the TensorRT plugin): creator fields, createPlugin validation and the
// serialization round trip getFieldsToSerialize -> createPlugin of both plugins (SelectiveScan,
// SS2DScan), without TensorRT's runtime.
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "selectiveScanPlugin.h"
#include "ss2dScanPlugin.h"

using namespace nvinfer1;

namespace {

int failures = 0;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what);
    ++failures;
  }
}

int32_t fieldValue(PluginFieldCollection const* fc, char const* name) {
  for (int32_t i = 0; i < fc->nbFields; ++i)
    if (std::strcmp(fc->fields[i].name, name) == 0 && fc->fields[i].type == PluginFieldType::kINT32)
      return *static_cast<int32_t const*>(fc->fields[i].data);
  return -100;
}

}  // namespace

int main() {
  remamber::trt::SelectiveScanPluginCreator creator;
  check(std::string(creator.getPluginName()) == "SelectiveScan", "plugin name");
  check(std::string(creator.getPluginVersion()) == "1", "plugin version");
  check(std::string(creator.getPluginNamespace()) == "remamber", "plugin namespace");
  check(creator.getFieldNames()->nbFields == 3, "three fields listed");

  int32_t softplus = 0, hasD = 1, hasBias = 0;
  std::vector<PluginField> fields{{"delta_softplus", &softplus, PluginFieldType::kINT32, 1},
                                  {"has_D", &hasD, PluginFieldType::kINT32, 1},
                                  {"has_delta_bias", &hasBias, PluginFieldType::kINT32, 1}};
  PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
  std::unique_ptr<IPluginV3> plugin(creator.createPlugin("scan0", &fc, TensorRTPhase::kBUILD));
  check(plugin != nullptr, "createPlugin with valid fields");
  if (plugin) {
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* saved = runtime->getFieldsToSerialize();
    check(fieldValue(saved, "delta_softplus") == 0 && fieldValue(saved, "has_D") == 1 &&
              fieldValue(saved, "has_delta_bias") == 0,
          "serialized fields hold the attribute values");
    std::unique_ptr<IPluginV3> restored(creator.createPlugin("scan0", saved, TensorRTPhase::kRUNTIME));
    check(restored != nullptr, "createPlugin from serialized fields");
    if (restored) {
      auto* rt2 = static_cast<IPluginV3OneRuntime*>(restored->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
      PluginFieldCollection const* again = rt2->getFieldsToSerialize();
      check(fieldValue(again, "delta_softplus") == 0 && fieldValue(again, "has_D") == 1 &&
                fieldValue(again, "has_delta_bias") == 0,
            "round trip keeps every field");
    }
    std::unique_ptr<IPluginV3> copy(plugin->clone());
    check(copy != nullptr, "clone");
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    DataType in[6] = {DataType::kHALF, DataType::kHALF, DataType::kFLOAT, DataType::kHALF, DataType::kHALF, DataType::kFLOAT};
    DataType out = DataType::kINT8;
    check(build->getOutputDataTypes(&out, 1, in, 6) == 0 && out == DataType::kFLOAT, "fp16 inputs give a float32 output");
    in[2] = DataType::kHALF;  // A not float32
    check(build->getOutputDataTypes(&out, 1, in, 6) != 0, "A float16 refused");
    check(build->getOutputDataTypes(&out, 1, in, 4) != 0, "4 inputs refused");
    check(build->getNbOutputs() == 1, "one output");
  }

  int32_t bad = 7;
  std::vector<PluginField> badFields{{"delta_softplus", &bad, PluginFieldType::kINT32, 1}};
  PluginFieldCollection badFc{1, badFields.data()};
  check(creator.createPlugin("scan1", &badFc, TensorRTPhase::kBUILD) == nullptr, "delta_softplus=7 refused");
  std::vector<PluginField> unknown{{"delta_softpls", &softplus, PluginFieldType::kINT32, 1}};
  PluginFieldCollection unknownFc{1, unknown.data()};
  check(creator.createPlugin("scan2", &unknownFc, TensorRTPhase::kBUILD) == nullptr, "unknown field refused");
  float f = 1.0f;
  std::vector<PluginField> floatField{{"has_D", &f, PluginFieldType::kFLOAT32, 1}};
  PluginFieldCollection floatFc{1, floatField.data()};
  check(creator.createPlugin("scan3", &floatFc, TensorRTPhase::kBUILD) == nullptr, "float field refused");

  // SS2DScan: the same machinery (plugins/common/trt_scan_plugin.h) with four fields, layout first.
  remamber::trt::SS2DScanPluginCreator ss2d;
  check(std::string(ss2d.getPluginName()) == "SS2DScan", "SS2DScan plugin name");
  check(std::string(ss2d.getPluginVersion()) == "1" && std::string(ss2d.getPluginNamespace()) == "remamber",
        "SS2DScan version and namespace");
  check(ss2d.getFieldNames()->nbFields == 4 && std::strcmp(ss2d.getFieldNames()->fields[0].name, "layout") == 0,
        "SS2DScan lists four fields, layout first");
  int32_t layout = 1, ss2dSoftplus = 0, ss2dHasD = 0, ss2dHasBias = 1;
  std::vector<PluginField> ss2dFields{{"layout", &layout, PluginFieldType::kINT32, 1},
                                      {"delta_softplus", &ss2dSoftplus, PluginFieldType::kINT32, 1},
                                      {"has_D", &ss2dHasD, PluginFieldType::kINT32, 1},
                                      {"has_delta_bias", &ss2dHasBias, PluginFieldType::kINT32, 1}};
  PluginFieldCollection ss2dFc{static_cast<int32_t>(ss2dFields.size()), ss2dFields.data()};
  std::unique_ptr<IPluginV3> ss2dPlugin(ss2d.createPlugin("ss2d0", &ss2dFc, TensorRTPhase::kBUILD));
  check(ss2dPlugin != nullptr, "SS2DScan createPlugin with valid fields");
  if (ss2dPlugin) {
    auto* runtime = static_cast<IPluginV3OneRuntime*>(ss2dPlugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* saved = runtime->getFieldsToSerialize();
    check(fieldValue(saved, "layout") == 1 && fieldValue(saved, "delta_softplus") == 0 && fieldValue(saved, "has_D") == 0 &&
              fieldValue(saved, "has_delta_bias") == 1,
          "SS2DScan serialized fields hold the attribute values");
    std::unique_ptr<IPluginV3> restored(ss2d.createPlugin("ss2d0", saved, TensorRTPhase::kRUNTIME));
    check(restored != nullptr, "SS2DScan createPlugin from serialized fields");
    auto* build = static_cast<IPluginV3OneBuild*>(ss2dPlugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    DataType in[6] = {DataType::kBF16, DataType::kBF16, DataType::kFLOAT, DataType::kBF16, DataType::kBF16, DataType::kFLOAT};
    DataType out = DataType::kINT8;
    check(build->getOutputDataTypes(&out, 1, in, 6) == 0 && out == DataType::kFLOAT, "SS2DScan bf16 inputs give float32");
    check(build->getOutputDataTypes(&out, 1, in, 7) != 0, "SS2DScan 7 inputs refused with has_D=0 has_delta_bias=1");
  }
  int32_t badLayout = 2;
  std::vector<PluginField> badLayoutFields{{"layout", &badLayout, PluginFieldType::kINT32, 1}};
  PluginFieldCollection badLayoutFc{1, badLayoutFields.data()};
  check(ss2d.createPlugin("ss2d1", &badLayoutFc, TensorRTPhase::kBUILD) == nullptr, "SS2DScan layout=2 refused");
  check(ss2d.createPlugin("ss2d2", &unknownFc, TensorRTPhase::kBUILD) == nullptr, "SS2DScan unknown field refused");

  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("plugin fields, validation and serialization round trip: all checks passed\n");
  return 0;
}
