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
#include "util/json.h"

namespace memfit {
namespace {

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
  Importer(std::string_view text, const std::string& source) : source_(source), value_(ParseJson(text, source)) {}

  Graph Run() {
    const JsonNode root(value_, source_);
    if (!root.IsObject() || !root.Has("nodes") || !root.Has("links")) {
      Fail("{}: not a Checkmate/Moccasin graph: expected a JSON object with 'nodes' and 'links'", source_);
    }
    const JsonNode nodes = root.Get("nodes");
    const JsonNode links = root.Get("links");
    if (!nodes.IsArray()) nodes.Fail("must be an array");
    if (!links.IsArray()) links.Fail("must be an array");
    if (nodes.Size() == 0) nodes.Fail("is empty");
    if (auto graph = root.Find("graph")) {
      if (!graph->IsObject()) graph->Fail("must be an object");
      if (auto order = graph->Find("order")) order_ = order;
      if (auto name = graph->Find("name"); name && name->IsString()) name_ = name->String();
    }
    const JsonNode first = nodes.At(0);
    flavour_ = first.IsObject() && first.Has("out_cost") ? Flavour::kMoccasin : Flavour::kCheckmate;
    for (size_t i = 0; i < nodes.Size(); ++i) ReadNode(nodes.At(i));
    ReadLinks(links);
    const std::vector<size_t> order = Order();
    CheckTopological(order);
    return Build(order);
  }

 private:
  // A size in bytes: a non-negative integer (a float is accepted when whole).
  static int64_t Bytes(const JsonNode& v) {
    if (v.IsInteger()) {
      const std::optional<int64_t> bytes = JsonToInt64(v.value());
      if (bytes && *bytes < 0) v.Fail(fmt::format("must be a non-negative number of bytes, got {}", v.Describe()));
      if (!bytes || *bytes > kMaxTensorBytes) v.Fail("is larger than 2^56 bytes");
      return *bytes;
    }
    if (!v.IsNumber()) v.Fail(fmt::format("must be a number of bytes, got {}", v.Describe()));
    const double value = v.Number();
    if (!(value >= 0)) v.Fail(fmt::format("must be a non-negative number of bytes, got {}", v.Describe()));
    if (value != std::floor(value)) v.Fail(fmt::format("must be a whole number of bytes, got {}", v.Describe()));
    if (value > static_cast<double>(kMaxTensorBytes)) v.Fail("is larger than 2^56 bytes");
    return static_cast<int64_t>(value);
  }

  static double Time(const JsonNode& v) {
    if (!v.IsNumber() || !(v.Number() >= 0)) v.Fail(fmt::format("must be a non-negative number, got {}", v.Describe()));
    return v.Number();
  }

  // A networkx node id (an integer or a string) as the key links use: its
  // JSON text.
  static std::string Key(const JsonNode& v) {
    if (v.IsInteger()) {
      if (!JsonToInt64(v.value())) v.Fail("is too large");
      return std::to_string(*JsonToInt64(v.value()));
    }
    if (v.IsString()) return '"' + v.String() + '"';
    v.Fail(fmt::format("must be an integer or a string, got {}", v.Describe()));
  }

  void ReadId(const JsonNode& v, Node& node) const {
    node.key = Key(v);
    if (v.IsInteger()) {
      node.id = v.Int();
    } else {
      node.id = v.String();
    }
  }

  void ReadNode(const JsonNode& j) {
    if (!j.IsObject()) j.Fail("must be an object");
    Node node;
    if (flavour_ == Flavour::kCheckmate) {
      ReadId(j.Get("id"), node);
      const JsonNode name = j.Get("name");
      if (!name.IsString() || name.String().empty()) name.Fail("must be a non-empty string");
      node.label = name.String();
      const JsonNode backward = j.Get("backward");
      if (!backward.IsBool()) backward.Fail(fmt::format("must be true or false, got {}", backward.Describe()));
      node.backward = backward.Bool();
      node.bytes = Bytes(j.Get("cost_ram"));
      node.time = Time(j.Get("cost_cpu"));
    } else {
      // Moccasin stores the node's id under "name".
      ReadId(j.Get("name"), node);
      node.label = "node" + (std::holds_alternative<int64_t>(node.id) ? std::to_string(std::get<int64_t>(node.id))
                                                                        : std::get<std::string>(node.id));
      node.bytes = Bytes(j.Get("out_cost"));
      node.time = Time(j.Get("duration"));
      if (auto param = j.Find("param_cost")) node.param_bytes = Bytes(*param);
    }
    const auto [it, inserted] = index_.emplace(node.key, nodes_.size());
    if (!inserted) j.Fail(fmt::format("node id {} is also the id of nodes[{}]", node.key, it->second));
    nodes_.push_back(std::move(node));
  }

  // The node a link endpoint or order entry names.
  size_t Lookup(const JsonNode& v) const {
    const bool id = v.IsString() || (v.IsInteger() && JsonToInt64(v.value()));
    const auto it = id ? index_.find(Key(v)) : index_.end();
    if (it == index_.end()) v.Fail(fmt::format("unknown node {}", v.Describe()));
    return it->second;
  }

  std::string Describe(size_t node) const {
    return fmt::format("node {} {}", nodes_[node].key, Quote(nodes_[node].label));
  }

  void ReadLinks(const JsonNode& links) {
    preds_.assign(nodes_.size(), {});
    succs_.assign(nodes_.size(), {});
    for (size_t i = 0; i < links.Size(); ++i) {
      const JsonNode link = links.At(i);
      if (!link.IsObject()) link.Fail("must be an object");
      // networkx writes "source"/"target"; Moccasin renamed them "0"/"1".
      const bool named = link.Has("source") || flavour_ == Flavour::kCheckmate;
      const size_t src = Lookup(link.Get(named ? "source" : "0"));
      const size_t dst = Lookup(link.Get(named ? "target" : "1"));
      if (src == dst) link.Fail(fmt::format("{} links to itself (a cycle)", Describe(src)));
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
    if (order_) {
      if (!order_->IsArray()) order_->Fail("must be an array of node ids");
      std::vector<bool> seen(nodes_.size(), false);
      for (size_t i = 0; i < order_->Size(); ++i) {
        const JsonNode entry = order_->At(i);
        const size_t node = Lookup(entry);
        if (seen[node]) entry.Fail(fmt::format("{} appears twice", Describe(node)));
        seen[node] = true;
        order.push_back(node);
      }
      for (size_t n = 0; n < nodes_.size(); ++n) {
        if (!seen[n]) order_->Fail(fmt::format("misses {} (nodes[{}])", Describe(n), n));
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
            if (on) path += Quote(nodes_[n].label) + " -> ";
          }
          return path + Quote(nodes_[succ].label);
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
      Fail("{}: links[{}]: {} -> {} goes backwards in the {}", source_, e.link, Describe(e.src), Describe(e.dst),
           order_ ? "given graph.order" : "order of node ids (Checkmate's ids must be topological)");
    }
  }

  Graph Build(const std::vector<size_t>& order) const {
    Graph graph;
    const bool moccasin = flavour_ == Flavour::kMoccasin;
    graph.name = name_ ? *name_ : std::filesystem::path(source_).stem().string();
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
    ValidateFrom(graph, source_);
    return graph;
  }

  std::string source_;
  JsonValue value_;
  std::optional<JsonNode> order_;   // graph.order, if given
  std::optional<std::string> name_;  // graph.name, if a string
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
