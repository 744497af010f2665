#include "io/graph_json.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "ir/registry.h"
#include "ir/validate.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace memfit {
namespace {

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
  if (!t.values.empty()) j["values"] = t.values;
  return j;
}

ordered_json FlagsToJson(const OpFlags& flags) {
  ordered_json j = ordered_json::object();
  if (flags.random) j["random"] = true;
  if (flags.inplace) j["inplace"] = true;
  if (flags.view) j["view"] = true;
  if (!flags.mutated_inputs.empty()) j["mutates"] = flags.mutated_inputs;
  return j;
}

ordered_json OpToJson(const Graph& graph, const Op& op) {
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
  if (const OpFlags flags = ComputeOpFlags(graph, op); !flags.empty()) j["flags"] = FlagsToJson(flags);
  return j;
}

// ---- Reading ----------------------------------------------------------------

uint32_t Id(const JsonNode& j, size_t limit, std::string_view what) {
  const int64_t v = j.Int();
  if (v < 0 || static_cast<uint64_t>(v) >= limit) {
    j.Fail(fmt::format("{} id {} is out of range (the graph has {})", what, v, limit));
  }
  return static_cast<uint32_t>(v);
}

// A number, or a non-finite double tagged as {"float": "inf" | "-inf" | "nan"}.
// Checks an entry's optional "id" against its position `i` among the
// graph's `what`s ("tensor", "op").
void CheckIdIsPosition(const JsonNode& entry, size_t i, std::string_view what) {
  if (auto id = entry.Find("id"); id && id->Int() != static_cast<int64_t>(i)) {
    id->Fail(fmt::format("{} ids must equal their position ({})", what, i));
  }
}

// The value a name field holds, by `parse`; an unknown name is an error
// naming the field's `what` ("dtype", "role", "phase").
template <typename E>
E ParseNamed(const JsonNode& field, std::optional<E> (*parse)(std::string_view), std::string_view what) {
  const std::optional<E> value = parse(field.String());
  if (!value) field.Fail(fmt::format("unknown {} {}", what, Quote(field.String())));
  return *value;
}

double TaggedFloat(const JsonNode& j) {
  if (j.IsNumber()) return j.Number();
  if (j.IsObject() && j.value().size() == 1 && j.Has("float") && j.Get("float").IsString()) {
    const std::string s = j.Get("float").String();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
  }
  j.Fail(fmt::format("expected a number, got {}", j.Describe()));
}

AttrValue Attr(const JsonNode& j) {
  if (j.IsNull()) return std::monostate{};
  if (j.IsBool()) return j.Bool();
  if (j.IsInteger()) return j.Int();
  if (j.IsNumber()) return j.Number();
  if (j.IsString()) return j.String();
  if (j.IsArray()) {
    const std::vector<JsonNode> elements = j.Elements();
    bool any_float = false;
    for (const JsonNode& e : elements) {
      if (!e.IsNumber()) e.Fail("list attributes hold numbers only");
      any_float = any_float || !e.IsInteger();
    }
    if (!any_float) return j.Ints();
    std::vector<double> v;
    for (const JsonNode& e : elements) v.push_back(e.Number());
    return v;
  }
  if (j.IsObject()) {
    if (j.value().size() == 1 && j.Has("floats")) {
      std::vector<double> v;
      for (const JsonNode& e : j.Get("floats").Elements()) v.push_back(TaggedFloat(e));
      return v;
    }
    return TaggedFloat(j);
  }
  j.Fail(fmt::format("unsupported attribute value {}", j.Describe()));
}

// An op's "flags" (version 2): checked for form, otherwise ignored, since the
// registry is their source (see graph_json.h).
void CheckFlags(const JsonNode& j, size_t num_inputs) {
  j.ExpectFields({"random", "inplace", "view", "mutates"});
  for (const char* name : {"random", "inplace", "view"}) {
    if (auto flag = j.Find(name)) flag->Bool();
  }
  if (auto mutates = j.Find("mutates")) {
    for (const JsonNode& index : mutates->Elements()) {
      const int64_t v = index.Int();
      if (v < 0 || static_cast<uint64_t>(v) >= num_inputs) {
        index.Fail(fmt::format("input index {} is out of range (the op has {} inputs)", v, num_inputs));
      }
    }
  }
}

Graph ReadGraph(const JsonNode& root) {
  if (auto format = root.Find("format"); format && format->IsString() && format->String() == "memfit.plan") {
    format->Fail("this is a plan (memfit.plan), not a graph (memfit.graph)");
  }
  root.ExpectFields({"format", "version", "name", "metadata", "tensors", "ops", "outputs"});
  const JsonNode format = root.Get("format");
  if (format.String() != "memfit.graph") format.Fail("expected \"memfit.graph\"");
  const JsonNode version = root.Get("version");
  if (version.Int() < kOldestGraphFormatVersion || version.Int() > kGraphFormatVersion) {
    version.Fail(fmt::format("unsupported version {} (this memfit reads versions {} to {})", version.Int(),
                             kOldestGraphFormatVersion, kGraphFormatVersion));
  }
  const bool has_flags = version.Int() >= 2;
  Graph g;
  if (auto name = root.Find("name")) g.name = name->String();
  if (auto meta = root.Find("metadata")) {
    for (const auto& [k, v] : meta->Fields()) g.metadata[k] = v.String();
  }
  const JsonNode tensors = root.Get("tensors");
  const JsonNode ops = root.Get("ops");
  const size_t num_tensors = tensors.Size();
  const size_t num_ops = ops.Size();
  for (size_t i = 0; i < num_tensors; ++i) {
    const JsonNode j = tensors.At(i);
    j.ExpectFields({"id", "name", "shape", "dtype", "role", "alias_of", "strides", "storage_offset", "values"});
    Tensor t;
    CheckIdIsPosition(j, i, "tensor");
    t.name = j.Get("name").String();
    t.shape = j.Get("shape").Ints();
    t.dtype = ParseNamed(j.Get("dtype"), ParseDType, "dtype");
    t.role = ParseNamed(j.Get("role"), ParseTensorRole, "role");
    if (auto alias = j.Find("alias_of")) t.alias_of = TensorId(Id(*alias, num_tensors, "tensor"));
    if (auto strides = j.Find("strides")) t.strides = strides->Ints();
    if (auto offset = j.Find("storage_offset")) t.storage_offset = offset->Int();
    if (auto values = j.Find("values")) t.values = values->Ints();
    g.AddTensor(std::move(t));
  }
  std::vector<bool> produced(num_tensors, false);
  for (size_t i = 0; i < num_ops; ++i) {
    const JsonNode j = ops.At(i);
    if (has_flags) {
      j.ExpectFields({"id", "name", "type", "overload", "phase", "inputs", "outputs", "attrs", "flags"});
    } else {
      j.ExpectFields({"id", "name", "type", "overload", "phase", "inputs", "outputs", "attrs"});
    }
    Op op;
    CheckIdIsPosition(j, i, "op");
    op.name = j.Get("name").String();
    op.type = j.Get("type").String();
    if (auto overload = j.Find("overload")) op.overload = overload->String();
    if (auto phase = j.Find("phase")) op.phase = ParseNamed(*phase, ParsePhase, "phase");
    for (const JsonNode& in : j.Get("inputs").Elements()) op.inputs.emplace_back(Id(in, num_tensors, "tensor"));
    for (const JsonNode& out : j.Get("outputs").Elements()) {
      const uint32_t id = Id(out, num_tensors, "tensor");
      if (produced[id]) out.Fail(fmt::format("tensor {} ({}) is produced twice", id, Quote(g.tensor(TensorId(id)).name)));
      produced[id] = true;
      op.outputs.emplace_back(id);
    }
    if (auto attrs = j.Find("attrs")) {
      for (const auto& [k, v] : attrs->Fields()) op.attrs[k] = Attr(v);
    }
    if (auto flags = j.Find("flags")) CheckFlags(*flags, op.inputs.size());
    g.AddOp(std::move(op));
  }
  if (auto outputs = root.Find("outputs")) {
    for (const JsonNode& out : outputs->Elements()) g.outputs.emplace_back(Id(out, num_tensors, "tensor"));
  }
  return g;
}

}  // namespace

std::string GraphToJson(const Graph& graph, int indent) {
  return GraphToJsonValue(graph).dump(indent, ' ', false, ordered_json::error_handler_t::replace) + "\n";
}

ordered_json GraphToJsonValue(const Graph& graph) {
  ordered_json root;
  root["format"] = "memfit.graph";
  root["version"] = kGraphFormatVersion;
  root["name"] = graph.name;
  root["metadata"] = graph.metadata;
  ordered_json tensors = ordered_json::array(), ops = ordered_json::array(), outputs = ordered_json::array();
  for (const Tensor& t : graph.tensors()) tensors.push_back(TensorToJson(t));
  for (const Op& op : graph.ops()) ops.push_back(OpToJson(graph, op));
  for (TensorId t : graph.outputs) outputs.push_back(t.value);
  root["tensors"] = std::move(tensors);
  root["ops"] = std::move(ops);
  root["outputs"] = std::move(outputs);
  return root;
}

Graph GraphFromJson(const JsonNode& node, bool validate) {
  Graph g = ReadGraph(node);
  if (validate) ValidateFrom(g, node.path().empty() ? node.source() : fmt::format("{}: {}", node.source(), node.path()));
  return g;
}

Graph GraphFromJson(std::string_view text, std::string_view source, bool validate) {
  const std::string name(source);
  const JsonValue root = ParseJson(text, name);
  return GraphFromJson(JsonNode(root, name), validate);
}

Graph LoadGraph(const std::string& path, bool validate) { return GraphFromJson(ReadFile(path), path, validate); }

void SaveGraph(const Graph& graph, const std::string& path) { WriteFileAtomically(path, GraphToJson(graph)); }

}  // namespace memfit
