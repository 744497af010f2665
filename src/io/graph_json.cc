#include "io/graph_json.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "ir/validate.h"
#include "util/error.h"
#include "util/file.h"

namespace memfit {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// ---- Writing ----------------------------------------------------------------

ordered_json AttrToJson(const AttrValue& value) {
  struct Visitor {
    ordered_json operator()(std::monostate) const { return nullptr; }
    ordered_json operator()(bool b) const { return b; }
    ordered_json operator()(int64_t i) const { return i; }
    ordered_json operator()(double d) const {
      if (std::isfinite(d)) return d;
      // JSON has no infinities or NaN; they travel as tagged strings.
      return ordered_json{{"float", std::isnan(d) ? "nan" : (d > 0 ? "inf" : "-inf")}};
    }
    ordered_json operator()(const std::string& s) const { return s; }
    ordered_json operator()(const std::vector<int64_t>& v) const { return v; }
    ordered_json operator()(const std::vector<double>& v) const {
      ordered_json out = ordered_json::array();
      for (double d : v) out.push_back((*this)(d));
      // A list of doubles that all print as integers would read back as
      // ints; tag it.
      return ordered_json{{"floats", out}};
    }
  };
  return std::visit(Visitor{}, value);
}

ordered_json TensorToJson(const Tensor& t) {
  ordered_json j;
  j["id"] = t.id.value;
  j["name"] = t.name;
  j["shape"] = t.shape;
  j["dtype"] = ToString(t.dtype);
  j["role"] = ToString(t.role);
  if (t.alias_of) j["alias_of"] = t.alias_of->value;
  if (!t.strides.empty()) j["strides"] = t.strides;
  if (t.storage_offset != 0) j["storage_offset"] = t.storage_offset;
  return j;
}

ordered_json OpToJson(const Op& op) {
  ordered_json j;
  j["id"] = op.id.value;
  j["name"] = op.name;
  j["type"] = op.type;
  if (!op.overload.empty()) j["overload"] = op.overload;
  j["phase"] = ToString(op.phase);
  ordered_json inputs = ordered_json::array(), outputs = ordered_json::array();
  for (TensorId t : op.inputs) inputs.push_back(t.value);
  for (TensorId t : op.outputs) outputs.push_back(t.value);
  j["inputs"] = inputs;
  j["outputs"] = outputs;
  if (!op.attrs.empty()) {
    ordered_json attrs = ordered_json::object();
    for (const auto& [k, v] : op.attrs) attrs[k] = AttrToJson(v);
    j["attrs"] = attrs;
  }
  return j;
}

// ---- Reading ----------------------------------------------------------------

class Reader {
 public:
  explicit Reader(std::string_view source) : source_(source) {}

  [[noreturn]] void Error(const std::string& path, const std::string& message) const {
    Fail("{}: {}: {}", source_, path.empty() ? "top level" : path, message);
  }

  const json& Field(const json& obj, const std::string& path, std::string_view key) const {
    auto it = obj.find(key);
    if (it == obj.end()) Error(path, fmt::format("missing field '{}'", key));
    return *it;
  }

  void ExpectObject(const json& j, const std::string& path, std::initializer_list<std::string_view> allowed) const {
    if (!j.is_object()) Error(path, fmt::format("expected an object, got {}", j.type_name()));
    for (const auto& [key, unused] : j.items()) {
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        Error(path, fmt::format("unknown field '{}'", key));
      }
    }
  }

  const json& Array(const json& j, const std::string& path) const {
    if (!j.is_array()) Error(path, fmt::format("expected an array, got {}", j.type_name()));
    return j;
  }

  std::string String(const json& j, const std::string& path) const {
    if (!j.is_string()) Error(path, fmt::format("expected a string, got {}", j.type_name()));
    return j.get<std::string>();
  }

  int64_t Int(const json& j, const std::string& path) const {
    if (j.is_number_unsigned()) {
      if (j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        Error(path, "integer is too large");
      }
      return static_cast<int64_t>(j.get<uint64_t>());
    }
    if (j.is_number_integer()) return j.get<int64_t>();
    if (j.is_number_float()) Error(path, fmt::format("expected an integer, got {}", j.dump()));
    Error(path, fmt::format("expected an integer, got {}", j.type_name()));
  }

  uint32_t Id(const json& j, const std::string& path, size_t limit, std::string_view what) const {
    const int64_t v = Int(j, path);
    if (v < 0 || static_cast<uint64_t>(v) >= limit) {
      Error(path, fmt::format("{} id {} is out of range (the graph has {})", what, v, limit));
    }
    return static_cast<uint32_t>(v);
  }

  std::vector<int64_t> Ints(const json& j, const std::string& path) const {
    Array(j, path);
    std::vector<int64_t> out;
    out.reserve(j.size());
    for (size_t i = 0; i < j.size(); ++i) out.push_back(Int(j[i], fmt::format("{}[{}]", path, i)));
    return out;
  }

  double TaggedFloat(const json& j, const std::string& path) const {
    if (j.is_number()) return j.get<double>();
    if (j.is_object() && j.size() == 1 && j.contains("float") && j["float"].is_string()) {
      const std::string s = j["float"].get<std::string>();
      if (s == "inf") return std::numeric_limits<double>::infinity();
      if (s == "-inf") return -std::numeric_limits<double>::infinity();
      if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    }
    Error(path, fmt::format("expected a number, got {}", j.dump()));
  }

  AttrValue Attr(const json& j, const std::string& path) const {
    switch (j.type()) {
      case json::value_t::null: return std::monostate{};
      case json::value_t::boolean: return j.get<bool>();
      case json::value_t::number_integer:
      case json::value_t::number_unsigned: return Int(j, path);
      case json::value_t::number_float: return j.get<double>();
      case json::value_t::string: return j.get<std::string>();
      case json::value_t::array: {
        bool any_float = false;
        for (size_t i = 0; i < j.size(); ++i) {
          if (!j[i].is_number()) Error(fmt::format("{}[{}]", path, i), "list attributes hold numbers only");
          any_float = any_float || j[i].is_number_float();
        }
        if (!any_float) return Ints(j, path);
        std::vector<double> v;
        for (const json& e : j) v.push_back(e.get<double>());
        return v;
      }
      case json::value_t::object: {
        if (j.size() == 1 && j.contains("floats")) {
          const json& list = Array(j["floats"], path + ".floats");
          std::vector<double> v;
          for (size_t i = 0; i < list.size(); ++i) v.push_back(TaggedFloat(list[i], fmt::format("{}.floats[{}]", path, i)));
          return v;
        }
        return TaggedFloat(j, path);
      }
      default: Error(path, fmt::format("unsupported attribute value {}", j.type_name()));
    }
  }

  Graph Read(const json& root) const {
    ExpectObject(root, "", {"format", "version", "name", "metadata", "tensors", "ops", "outputs"});
    if (String(Field(root, "", "format"), "format") != "memfit.graph") {
      Error("format", "expected \"memfit.graph\"");
    }
    const int64_t version = Int(Field(root, "", "version"), "version");
    if (version != kGraphFormatVersion) {
      Error("version", fmt::format("unsupported version {} (this memfit reads version {})", version, kGraphFormatVersion));
    }
    Graph g;
    if (root.contains("name")) g.name = String(root["name"], "name");
    if (root.contains("metadata")) {
      const json& meta = root["metadata"];
      if (!meta.is_object()) Error("metadata", "expected an object");
      for (const auto& [k, v] : meta.items()) g.metadata[k] = String(v, "metadata." + k);
    }
    const json& tensors = Array(Field(root, "", "tensors"), "tensors");
    const json& ops = Array(Field(root, "", "ops"), "ops");
    const size_t num_tensors = tensors.size();
    for (size_t i = 0; i < num_tensors; ++i) {
      const std::string path = fmt::format("tensors[{}]", i);
      const json& j = tensors[i];
      ExpectObject(j, path, {"id", "name", "shape", "dtype", "role", "alias_of", "strides", "storage_offset"});
      Tensor t;
      if (j.contains("id") && Int(j["id"], path + ".id") != static_cast<int64_t>(i)) {
        Error(path + ".id", fmt::format("tensor ids must equal their position ({})", i));
      }
      t.name = String(Field(j, path, "name"), path + ".name");
      t.shape = Ints(Field(j, path, "shape"), path + ".shape");
      const std::string dtype = String(Field(j, path, "dtype"), path + ".dtype");
      auto d = ParseDType(dtype);
      if (!d) Error(path + ".dtype", fmt::format("unknown dtype '{}'", dtype));
      t.dtype = *d;
      const std::string role = String(Field(j, path, "role"), path + ".role");
      auto r = ParseTensorRole(role);
      if (!r) Error(path + ".role", fmt::format("unknown role '{}'", role));
      t.role = *r;
      if (j.contains("alias_of")) t.alias_of = TensorId(Id(j["alias_of"], path + ".alias_of", num_tensors, "tensor"));
      if (j.contains("strides")) t.strides = Ints(j["strides"], path + ".strides");
      if (j.contains("storage_offset")) t.storage_offset = Int(j["storage_offset"], path + ".storage_offset");
      g.AddTensor(std::move(t));
    }
    std::vector<bool> produced(num_tensors, false);
    for (size_t i = 0; i < ops.size(); ++i) {
      const std::string path = fmt::format("ops[{}]", i);
      const json& j = ops[i];
      ExpectObject(j, path, {"id", "name", "type", "overload", "phase", "inputs", "outputs", "attrs"});
      Op op;
      if (j.contains("id") && Int(j["id"], path + ".id") != static_cast<int64_t>(i)) {
        Error(path + ".id", fmt::format("op ids must equal their position ({})", i));
      }
      op.name = String(Field(j, path, "name"), path + ".name");
      op.type = String(Field(j, path, "type"), path + ".type");
      if (j.contains("overload")) op.overload = String(j["overload"], path + ".overload");
      if (j.contains("phase")) {
        const std::string phase = String(j["phase"], path + ".phase");
        auto p = ParsePhase(phase);
        if (!p) Error(path + ".phase", fmt::format("unknown phase '{}'", phase));
        op.phase = *p;
      }
      const json& inputs = Array(Field(j, path, "inputs"), path + ".inputs");
      for (size_t k = 0; k < inputs.size(); ++k) {
        op.inputs.emplace_back(Id(inputs[k], fmt::format("{}.inputs[{}]", path, k), num_tensors, "tensor"));
      }
      const json& outputs = Array(Field(j, path, "outputs"), path + ".outputs");
      for (size_t k = 0; k < outputs.size(); ++k) {
        const std::string out_path = fmt::format("{}.outputs[{}]", path, k);
        const uint32_t id = Id(outputs[k], out_path, num_tensors, "tensor");
        if (produced[id]) Error(out_path, fmt::format("tensor {} ('{}') is produced twice", id, g.tensor(TensorId(id)).name));
        produced[id] = true;
        op.outputs.emplace_back(id);
      }
      if (j.contains("attrs")) {
        const json& attrs = j["attrs"];
        if (!attrs.is_object()) Error(path + ".attrs", "expected an object");
        for (const auto& [k, v] : attrs.items()) op.attrs[k] = Attr(v, fmt::format("{}.attrs.{}", path, k));
      }
      g.AddOp(std::move(op));
    }
    if (root.contains("outputs")) {
      const json& outputs = Array(root["outputs"], "outputs");
      for (size_t k = 0; k < outputs.size(); ++k) {
        g.outputs.emplace_back(Id(outputs[k], fmt::format("outputs[{}]", k), num_tensors, "tensor"));
      }
    }
    return g;
  }

 private:
  std::string source_;
};

}  // namespace

std::string GraphToJson(const Graph& graph, int indent) {
  ordered_json root;
  root["format"] = "memfit.graph";
  root["version"] = kGraphFormatVersion;
  root["name"] = graph.name;
  root["metadata"] = graph.metadata;
  ordered_json tensors = ordered_json::array(), ops = ordered_json::array(), outputs = ordered_json::array();
  for (const Tensor& t : graph.tensors()) tensors.push_back(TensorToJson(t));
  for (const Op& op : graph.ops()) ops.push_back(OpToJson(op));
  for (TensorId t : graph.outputs) outputs.push_back(t.value);
  root["tensors"] = std::move(tensors);
  root["ops"] = std::move(ops);
  root["outputs"] = std::move(outputs);
  return root.dump(indent) + "\n";
}

Graph GraphFromJson(std::string_view text, std::string_view source, bool validate) {
  json root;
  try {
    root = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 3, column 4: ..."
    std::string what = e.what();
    const size_t at = what.find("] ");
    Fail("{}: malformed JSON: {}", source, at == std::string::npos ? what : what.substr(at + 2));
  }
  Graph g = Reader(source).Read(root);
  if (validate) {
    try {
      Validate(g);
    } catch (const memfit::Error& e) {
      Fail("{}: {}", source, e.what());
    }
  }
  return g;
}

Graph LoadGraph(const std::string& path, bool validate) { return GraphFromJson(ReadFile(path), path, validate); }

void SaveGraph(const Graph& graph, const std::string& path) { WriteFileAtomically(path, GraphToJson(graph)); }

}  // namespace memfit
