// Small ONNX models built with the protobuf API, for the importer's tests.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace memfit::testing {

// Appends nodes, inputs, outputs and initializers to a ModelProto. A dim of
// -1 in Input() is symbolic ("batch").
class OnnxModel {
 public:
  explicit OnnxModel(const std::string& name, int64_t opset = 17) {
    model_.set_ir_version(8);
    model_.set_producer_name("memfit-test");
    auto* op = model_.add_opset_import();
    op->set_domain("");
    op->set_version(opset);
    model_.mutable_graph()->set_name(name);
  }

  void Input(const std::string& name, const std::vector<int64_t>& dims, int32_t type = onnx::TensorProto::FLOAT) {
    auto* vi = model_.mutable_graph()->add_input();
    vi->set_name(name);
    auto* t = vi->mutable_type()->mutable_tensor_type();
    t->set_elem_type(type);
    auto* shape = t->mutable_shape();
    for (int64_t d : dims) {
      if (d < 0) {
        shape->add_dim()->set_dim_param("batch");
      } else {
        shape->add_dim()->set_dim_value(d);
      }
    }
  }
  void Output(const std::string& name) { model_.mutable_graph()->add_output()->set_name(name); }

  // A float initializer of zeros.
  void Weight(const std::string& name, const std::vector<int64_t>& dims) {
    auto* t = model_.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    int64_t n = 1;
    for (int64_t d : dims) {
      t->add_dims(d);
      n *= d;
    }
    t->mutable_raw_data()->assign(static_cast<size_t>(n) * sizeof(float), '\0');
  }
  // A 1-d int64 initializer (a Reshape shape).
  void Ints(const std::string& name, const std::vector<int64_t>& values) {
    auto* t = model_.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(values.size()));
    for (int64_t v : values) t->add_int64_data(v);
  }
  // A 0-d float Constant node.
  void Scalar(const std::string& name, float value) {
    onnx::NodeProto* n = Node("Constant", {}, {name});
    auto* a = n->add_attribute();
    a->set_name("value_float");
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(value);
  }

  onnx::NodeProto* Node(const std::string& type, std::initializer_list<std::string> inputs,
                        std::initializer_list<std::string> outputs, const std::string& name = "") {
    onnx::NodeProto* n = model_.mutable_graph()->add_node();
    n->set_op_type(type);
    n->set_name(name);
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    return n;
  }

  static void Int(onnx::NodeProto* n, const std::string& name, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void Ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void String(onnx::NodeProto* n, const std::string& name, const std::string& v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::STRING);
    a->set_s(v);
  }
  static void Float(onnx::NodeProto* n, const std::string& name, float v) {
    auto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(v);
  }

  onnx::ModelProto& proto() { return model_; }
  std::string Bytes() const { return model_.SerializeAsString(); }

 private:
  onnx::ModelProto model_;
};

// x[batch, 784] -> Gemm(fc1, transB) -> Relu -> Gemm(fc2, transB) -> y[batch, 10],
// as torch.onnx.export writes an nn.Sequential of two nn.Linear.
inline OnnxModel Mlp(int64_t batch = -1) {
  OnnxModel m("mlp");
  m.Input("x", {batch, 784});
  m.Weight("fc1.weight", {256, 784});
  m.Weight("fc1.bias", {256});
  m.Weight("fc2.weight", {10, 256});
  m.Weight("fc2.bias", {10});
  OnnxModel::Int(m.Node("Gemm", {"x", "fc1.weight", "fc1.bias"}, {"h"}, "/fc1/Gemm"), "transB", 1);
  m.Node("Relu", {"h"}, {"r"}, "/relu/Relu");
  OnnxModel::Int(m.Node("Gemm", {"r", "fc2.weight", "fc2.bias"}, {"y"}, "/fc2/Gemm"), "transB", 1);
  m.Output("y");
  return m;
}

// x[2, 3, 32, 32] -> Conv(3x3, pad 1, no bias) -> BatchNormalization -> Relu
// -> MaxPool(2, stride 2) -> Conv(3x3, stride 2, pad 1, bias) -> Relu
// -> GlobalAveragePool -> Flatten -> Gemm -> logits[2, 10].
inline OnnxModel SmallCnn() {
  OnnxModel m("cnn");
  m.Input("x", {2, 3, 32, 32});
  m.Weight("conv1.weight", {16, 3, 3, 3});
  for (const char* p : {"bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"}) m.Weight(p, {16});
  m.Weight("conv2.weight", {32, 16, 3, 3});
  m.Weight("conv2.bias", {32});
  m.Weight("fc.weight", {10, 32});
  m.Weight("fc.bias", {10});
  auto* conv1 = m.Node("Conv", {"x", "conv1.weight"}, {"c1"}, "/conv1/Conv");
  OnnxModel::Ints(conv1, "kernel_shape", {3, 3});
  OnnxModel::Ints(conv1, "pads", {1, 1, 1, 1});
  auto* bn = m.Node("BatchNormalization", {"c1", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"},
                    {"b1"}, "/bn1/BatchNormalization");
  OnnxModel::Float(bn, "epsilon", 1e-5f);
  OnnxModel::Float(bn, "momentum", 0.9f);
  m.Node("Relu", {"b1"}, {"r1"}, "/relu1/Relu");
  auto* pool = m.Node("MaxPool", {"r1"}, {"p1"}, "/pool/MaxPool");
  OnnxModel::Ints(pool, "kernel_shape", {2, 2});
  OnnxModel::Ints(pool, "strides", {2, 2});
  auto* conv2 = m.Node("Conv", {"p1", "conv2.weight", "conv2.bias"}, {"c2"}, "/conv2/Conv");
  OnnxModel::Ints(conv2, "strides", {2, 2});
  OnnxModel::Ints(conv2, "pads", {1, 1, 1, 1});
  m.Node("Relu", {"c2"}, {"r2"}, "/relu2/Relu");
  m.Node("GlobalAveragePool", {"r2"}, {"g"}, "/gap/GlobalAveragePool");
  m.Node("Flatten", {"g"}, {"f"}, "/Flatten");
  OnnxModel::Int(m.Node("Gemm", {"f", "fc.weight", "fc.bias"}, {"logits"}, "/fc/Gemm"), "transB", 1);
  m.Output("logits");
  return m;
}

}  // namespace memfit::testing
