#include "importers/checkmate_import.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "importers/names.h"
#include "ir/validate.h"
#include "util/error.h"
#include "util/file.h"

namespace memfit {
namespace {

using nlohmann::json;

// The op type of every imported node; not registered, so opaque.
constexpr const char* kNodeOpType = "checkmate.node";

enum class Flavour { kCheckmate, kMoccasin };

struct Node {
  std::string key;    // the id as JSON text: links and graph.order refer to it
  std::string label;  // name for messages and for the op
  AttrValue id;       // the id, kept as an op attribute (integer or string)
  int64_t bytes = 0;
  double time = 0;
  int64_t param_bytes = 0;
  bool backward = false;
};

class Importer {
 public:
  Importer(std::string_view text, const std::string& source) : source_(source) {
    try {
      root_ = json::parse(text);
    } catch (const json::parse_error& e) {
      Fail("{}: malformed JSON: {}", source_, e.what());
    }
  }

  Graph Run() {
    if (!root_.is_object() || !root_.contains("nodes") || !root_.contains("links")) {
      Fail("{}: not a Checkmate/Moccasin graph: expected a JSON object with 'nodes' and 'links'", source_);
    }
    const json& nodes = root_["nodes"];
    const json& links = root_["links"];
    if (!nodes.is_array()) Error("nodes", "must be an array");
    if (!links.is_array()) Error("links", "must be an array");
    if (nodes.empty()) Error("nodes", "is empty");
    if (root_.contains("graph") && !root_["graph"].is_object()) Error("graph", "must be an object");
    flavour_ = nodes[0].is_object() && nodes[0].contains("out_cost") ? Flavour::kMoccasin : Flavour::kCheckmate;
    for (size_t i = 0; i < nodes.size(); ++i) ReadNode(nodes[i], i);
    ReadLinks(links);
    const std::vector<size_t> order = Order();
    CheckTopological(order);
    return Build(order);
  }

 private:
  [[noreturn]] void Error(const std::string& path, const std::string& message) const {
    Fail("{}: {}: {}", source_, path, message);
  }

  const json& Field(const json& obj, const std::string& path, const char* key) const {
    if (!obj.contains(key)) Error(path, fmt::format("missing field '{}'", key));
    return obj[key];
  }

  // A size in bytes: a non-negative integer (a float is accepted when whole).
  int64_t Bytes(const json& v, const std::string& path) const {
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(kMaxTensorBytes)) Error(path, "is larger than 2^56 bytes");
      return v.get<int64_t>();
    }
    if (v.is_number_integer()) Error(path, fmt::format("must be a non-negative number of bytes, got {}", v.dump()));
    if (!v.is_number_float()) Error(path, fmt::format("must be a number of bytes, got {}", v.dump()));
    const double value = v.get<double>();
    if (!(value >= 0)) Error(path, fmt::format("must be a non-negative number of bytes, got {}", v.dump()));
    if (value != std::floor(value)) Error(path, fmt::format("must be a whole number of bytes, got {}", v.dump()));
    if (value > static_cast<double>(kMaxTensorBytes)) Error(path, "is larger than 2^56 bytes");
    return static_cast<int64_t>(value);
  }

  double Time(const json& v, const std::string& path) const {
    if (!v.is_number() || !(v.get<double>() >= 0)) {
      Error(path, fmt::format("must be a non-negative number, got {}", v.dump()));
    }
    return v.get<double>();
  }

  // A networkx node id: an integer or a string.
  void ReadId(const json& v, const std::string& path, Node& node) const {
    if (v.is_number_integer()) {
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
        Error(path, "is too large");
      }
      node.id = v.get<int64_t>();
    } else if (v.is_string()) {
      node.id = v.get<std::string>();
    } else {
      Error(path, fmt::format("must be an integer or a string, got {}", v.dump()));
    }
    node.key = v.dump();
  }

  void ReadNode(const json& j, size_t i) {
    const std::string path = fmt::format("nodes[{}]", i);
    if (!j.is_object()) Error(path, "must be an object");
    Node node;
    if (flavour_ == Flavour::kCheckmate) {
      ReadId(Field(j, path, "id"), path + ".id", node);
      const json& name = Field(j, path, "name");
      if (!name.is_string() || name.get<std::string>().empty()) Error(path + ".name", "must be a non-empty string");
      node.label = name.get<std::string>();
      const json& backward = Field(j, path, "backward");
      if (!backward.is_boolean()) {
        Error(path + ".backward", fmt::format("must be true or false, got {}", backward.dump()));
      }
      node.backward = backward.get<bool>();
      node.bytes = Bytes(Field(j, path, "cost_ram"), path + ".cost_ram");
      node.time = Time(Field(j, path, "cost_cpu"), path + ".cost_cpu");
    } else {
      // Moccasin stores the node's id under "name".
      ReadId(Field(j, path, "name"), path + ".name", node);
      node.label = "node" + (std::holds_alternative<int64_t>(node.id) ? std::to_string(std::get<int64_t>(node.id))
                                                                        : std::get<std::string>(node.id));
      node.bytes = Bytes(Field(j, path, "out_cost"), path + ".out_cost");
      node.time = Time(Field(j, path, "duration"), path + ".duration");
      if (j.contains("param_cost")) node.param_bytes = Bytes(j["param_cost"], path + ".param_cost");
    }
    const auto [it, inserted] = index_.emplace(node.key, nodes_.size());
    if (!inserted) Error(path, fmt::format("node id {} is also the id of nodes[{}]", node.key, it->second));
    nodes_.push_back(std::move(node));
  }

  // The node a link endpoint or order entry names.
  size_t Lookup(const json& v, const std::string& path) const {
    const auto it = index_.find(v.dump());
    if (it == index_.end()) Error(path, fmt::format("unknown node {}", v.dump()));
    return it->second;
  }

  std::string Describe(size_t node) const { return fmt::format("node {} '{}'", nodes_[node].key, nodes_[node].label); }

  void ReadLinks(const json& links) {
    preds_.assign(nodes_.size(), {});
    succs_.assign(nodes_.size(), {});
    for (size_t i = 0; i < links.size(); ++i) {
      const std::string path = fmt::format("links[{}]", i);
      const json& link = links[i];
      if (!link.is_object()) Error(path, "must be an object");
      // networkx writes "source"/"target"; Moccasin renamed them "0"/"1".
      const bool named = link.contains("source") || flavour_ == Flavour::kCheckmate;
      const char* src_key = named ? "source" : "0";
      const char* dst_key = named ? "target" : "1";
      const size_t src = Lookup(Field(link, path, src_key), path + "." + src_key);
      const size_t dst = Lookup(Field(link, path, dst_key), path + "." + dst_key);
      if (src == dst) Error(path, fmt::format("{} links to itself (a cycle)", Describe(src)));
      if (std::find(preds_[dst].begin(), preds_[dst].end(), src) != preds_[dst].end()) continue;  // a repeat
      preds_[dst].push_back(src);
      succs_[src].push_back(dst);
      edges_.push_back({src, dst, i});
    }
  }

  // graph.order if given; else, for Checkmate with integer ids, ascending
  // ids; else the order of `nodes`.
  std::vector<size_t> Order() const {
    std::vector<size_t> order;
    if (root_.contains("graph") && root_["graph"].contains("order")) {
      const json& given = root_["graph"]["order"];
      if (!given.is_array()) Error("graph.order", "must be an array of node ids");
      std::vector<bool> seen(nodes_.size(), false);
      for (size_t i = 0; i < given.size(); ++i) {
        const std::string path = fmt::format("graph.order[{}]", i);
        const size_t node = Lookup(given[i], path);
        if (seen[node]) Error(path, fmt::format("{} appears twice", Describe(node)));
        seen[node] = true;
        order.push_back(node);
      }
      for (size_t n = 0; n < nodes_.size(); ++n) {
        if (!seen[n]) Error("graph.order", fmt::format("misses {} (nodes[{}])", Describe(n), n));
      }
      return order;
    }
    for (size_t n = 0; n < nodes_.size(); ++n) order.push_back(n);
    const bool integer_ids = std::all_of(nodes_.begin(), nodes_.end(),
                                         [](const Node& n) { return std::holds_alternative<int64_t>(n.id); });
    if (flavour_ == Flavour::kCheckmate && integer_ids) {
      std::sort(order.begin(), order.end(),
                [&](size_t a, size_t b) { return std::get<int64_t>(nodes_[a].id) < std::get<int64_t>(nodes_[b].id); });
    }
    return order;
  }

  // A cycle as "'a' -> 'b' -> 'a'", or nullopt (iterative DFS).
  std::optional<std::string> FindCycle() const {
    std::vector<int> state(nodes_.size(), 0);  // 0 new, 1 on the stack, 2 done
    for (size_t start = 0; start < nodes_.size(); ++start) {
      if (state[start]) continue;
      std::vector<std::pair<size_t, size_t>> stack = {{start, 0}};
      state[start] = 1;
      while (!stack.empty()) {
        auto& [node, next] = stack.back();
        if (next == succs_[node].size()) {
          state[node] = 2;
          stack.pop_back();
          continue;
        }
        const size_t succ = succs_[node][next++];
        if (state[succ] == 1) {
          std::string path;
          bool on = false;
          for (const auto& [n, unused] : stack) {
            on = on || n == succ;
            if (on) path += fmt::format("'{}' -> ", nodes_[n].label);
          }
          return path + fmt::format("'{}'", nodes_[succ].label);
        }
        if (state[succ] == 0) {
          state[succ] = 1;
          stack.push_back({succ, 0});
        }
      }
    }
    return std::nullopt;
  }

  void CheckTopological(const std::vector<size_t>& order) const {
    std::vector<size_t> position(nodes_.size());
    for (size_t i = 0; i < order.size(); ++i) position[order[i]] = i;
    for (const Edge& e : edges_) {
      if (position[e.src] < position[e.dst]) continue;
      // A cycle explains any backward link; report it rather than the link.
      if (const auto cycle = FindCycle()) Fail("{}: the graph has a cycle: {}", source_, *cycle);
      const bool given = root_.contains("graph") && root_["graph"].contains("order");
      Error(fmt::format("links[{}]", e.link),
            fmt::format("{} -> {} goes backwards in the {}", Describe(e.src), Describe(e.dst),
                        given ? "given graph.order" : "order of node ids (Checkmate's ids must be topological)"));
    }
  }

  Graph Build(const std::vector<size_t>& order) const {
    Graph graph;
    const bool moccasin = flavour_ == Flavour::kMoccasin;
    if (root_.contains("graph") && root_["graph"].contains("name") && root_["graph"]["name"].is_string()) {
      graph.name = root_["graph"]["name"].get<std::string>();
    } else {
      graph.name = std::filesystem::path(source_).stem().string();
    }
    graph.metadata["importer"] = moccasin ? "moccasin" : "checkmate";
    graph.metadata["importer.file"] = source_;
    graph.metadata["importer.time_us"] = moccasin ? "raw node duration (Moccasin's abstract units)"
                                                  : "raw cost_cpu (profiled units that differ between graphs)";
    graph.metadata["importer.bytes"] = moccasin ? "node out_cost / param_cost" : "node cost_ram";

    importers_internal::UniqueNames op_names, tensor_names;
    std::vector<TensorId> result(nodes_.size());
    for (size_t n : order) {
      const Node& node = nodes_[n];
      Op op;
      op.name = op_names.Take(node.label);
      op.type = kNodeOpType;
      op.phase = node.backward ? Phase::kBackward : Phase::kForward;
      for (size_t pred : preds_[n]) op.inputs.push_back(result[pred]);
      if (node.param_bytes > 0) {
        Tensor param;
        param.name = tensor_names.Take(node.label + ".param");
        param.shape = {node.param_bytes};
        param.dtype = DType::kU8;
        param.role = TensorRole::kParameter;
        op.inputs.push_back(graph.AddTensor(std::move(param)));
      }
      Tensor out;
      out.name = tensor_names.Take(node.label);
      out.shape = {node.bytes};
      out.dtype = DType::kU8;
      out.role = node.backward ? TensorRole::kGradient : TensorRole::kActivation;
      result[n] = graph.AddTensor(std::move(out));
      op.outputs = {result[n]};
      op.attrs["time_us"] = node.time;  // read by sim/cost_model.h (kTimeUsAttr)
      op.attrs["node"] = node.id;
      graph.AddOp(std::move(op));
    }
    for (size_t n : order) {
      if (succs_[n].empty()) graph.outputs.push_back(result[n]);
    }
    Validate(graph);
    return graph;
  }

  std::string source_;
  json root_;
  Flavour flavour_ = Flavour::kCheckmate;
  std::vector<Node> nodes_;
  std::unordered_map<std::string, size_t> index_;  // Node::key -> index; never iterated
  std::vector<std::vector<size_t>> preds_;         // distinct predecessors, in link order
  std::vector<std::vector<size_t>> succs_;
  struct Edge {
    size_t src, dst;
    size_t link;  // its index in links[]
  };
  std::vector<Edge> edges_;                        // distinct links, in file order
};

}  // namespace

Graph ImportCheckmateJson(std::string_view text, const std::string& source) { return Importer(text, source).Run(); }

Graph ImportCheckmateFile(const std::string& path) { return ImportCheckmateJson(ReadFile(path), path); }

}  // namespace memfit
