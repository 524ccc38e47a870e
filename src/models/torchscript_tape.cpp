#include "models/torchscript_tape.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/alias_analysis.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/remove_mutation.h>

#include <deque>
#include <optional>
#include <set>

namespace nfk::detail {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

std::string kind_of(const Node* n) {
  return n->kind().toQualString();
}

std::optional<c10::IValue> constant(const Value* v) {
  auto iv = torch::jit::toIValue(v);
  if (!iv) return std::nullopt;
  return *iv;
}

// An int list given as a constant or as a ListConstruct of constants.
std::optional<std::vector<int64_t>> int_list(const Value* v) {
  if (auto iv = constant(v); iv && iv->isIntList()) return iv->toIntVector();
  if (v->node()->kind() != c10::prim::ListConstruct) return std::nullopt;
  std::vector<int64_t> out;
  for (const Value* e : v->node()->inputs()) {
    auto iv = constant(e);
    if (!iv || !iv->isInt()) return std::nullopt;
    out.push_back(iv->toInt());
  }
  return out;
}

std::optional<int64_t> int_constant(const Value* v) {
  auto iv = constant(v);
  if (!iv || !iv->isInt()) return std::nullopt;
  return iv->toInt();
}

std::optional<double> double_constant(const Value* v) {
  auto iv = constant(v);
  if (!iv || !(iv->isDouble() || iv->isInt())) return std::nullopt;
  return iv->isDouble() ? iv->toDouble() : static_cast<double>(iv->toInt());
}

std::optional<bool> bool_constant(const Value* v) {
  auto iv = constant(v);
  if (!iv || !iv->isBool()) return std::nullopt;
  return iv->toBool();
}

bool is_none(const Value* v) {
  return v->mustBeNone();
}

bool has_calls(const torch::jit::Block& block) {
  for (const Node* n : block.nodes()) {
    if (n->kind() == c10::prim::CallMethod || n->kind() == c10::prim::CallFunction) return true;
    for (const auto* b : n->blocks()) {
      if (has_calls(*b)) return true;
    }
  }
  return false;
}

// `self.a.b.weight` for a value read from the module by a GetAttr chain, else "".
std::string attribute_path(const Value* v, const Value* self) {
  std::string path;
  while (v->node()->kind() == c10::prim::GetAttr) {
    path = v->node()->s(c10::attr::name) + (path.empty() ? "" : "." + path);
    v = v->node()->input(0);
  }
  return v == self ? path : "";
}

bool is_recognised(const std::string& kind) {
  static const std::set<std::string> kinds = {
      "aten::linear",     "aten::conv2d",     "aten::_convolution", "aten::conv_transpose2d",
      "aten::layer_norm", "aten::group_norm", "aten::batch_norm",   "aten::embedding"};
  return kinds.count(kind) > 0;
}

// Why the tape cannot read back an op's tensor v after the forward: something (v itself or a
// view of it) is written in place, e.g. an in-place op that mutation removal had to keep because
// v aliases a graph input. "" if nothing writes it.
std::string written_in_place(Value* v, const torch::jit::AliasDb& aliases) {
  if (!aliases.hasWriters(v)) return "";
  for (const auto& use : v->uses()) {
    if (aliases.writesToAlias(use.user, {v})) return use.user->kind().toQualString();
  }
  return "an in-place op on an alias of it";
}
// Replaces `self.a.b...` reads of non-tensor, non-module attributes (training flags, strides,
// padding modes, ...) by constants with their current values, so that constant propagation can
// resolve the branches around the parametric ops.
void fold_plain_attributes(Graph& graph, torch::jit::Module& module, torch::jit::Block* block) {
  for (Node* n : block->nodes()) {
    for (auto* b : n->blocks()) fold_plain_attributes(graph, module, b);
    if (n->kind() != c10::prim::GetAttr) continue;
    std::deque<std::string> path;
    const Node* cur = n;
    while (cur->kind() == c10::prim::GetAttr) {
      path.push_front(cur->s(c10::attr::name));
      if (cur->input(0) == graph.inputs()[0]) break;
      cur = cur->input(0)->node();
    }
    if (cur->kind() != c10::prim::GetAttr || cur->input(0) != graph.inputs()[0]) continue;
    c10::IValue value = module._ivalue();
    for (const auto& name : path) {
      if (!value.isObject()) break;
      value = value.toObject()->getAttr(name);
    }
    if (value.isTensor() || value.isObject() || value.isModule() || value.isNone()) continue;
    try {
      torch::jit::WithInsertPoint guard(n);
      Value* c = graph.insertConstant(value);
      n->output()->replaceAllUsesWith(c);
    } catch (const c10::Error&) {  // a type constants cannot hold: leave the read
    }
  }
}

// The tensors of one recognised op node and its geometry; `why` is non-empty when the node is one
// of the recognised kinds but its arguments are outside the per-example formulas.
struct MatchedOp {
  TapeRecord geometry;
  Value *input = nullptr, *weight = nullptr, *bias = nullptr;
  Value *running_mean = nullptr, *running_var = nullptr;
  std::string why;
};

MatchedOp match_op(Node* n, const std::string& kind) {
  MatchedOp m;
  TapeRecord& g = m.geometry;
  if (kind == "aten::linear") {
    g.layer = TapedLayer::kLinear;
    m.input = n->input(0), m.weight = n->input(1), m.bias = n->input(2);
  } else if (kind == "aten::conv2d" || kind == "aten::_convolution" ||
             kind == "aten::conv_transpose2d") {
    const bool general = kind == "aten::_convolution";
    auto stride = int_list(n->input(3)), padding = int_list(n->input(4));
    auto dilation = int_list(n->input(kind == "aten::conv_transpose2d" ? 7 : 5));
    auto groups = int_constant(n->input(general ? 8 : 6));
    std::optional<bool> transposed = kind == "aten::conv_transpose2d";
    if (general) transposed = bool_constant(n->input(6));
    if (!stride || !padding || !dilation || !groups || !transposed || stride->size() != 2 ||
        padding->size() != 2 || dilation->size() != 2) {
      m.why = "not a 2-d convolution with constant stride, padding, dilation and groups";
      return m;
    }
    g.layer = *transposed ? TapedLayer::kConvTranspose2d : TapedLayer::kConv2d;
    g.stride = *stride, g.padding = *padding, g.dilation = *dilation, g.groups = *groups;
    m.input = n->input(0), m.weight = n->input(1), m.bias = n->input(2);
  } else if (kind == "aten::layer_norm" || kind == "aten::group_norm") {
    auto eps = double_constant(n->input(4));
    auto shape = int_list(n->input(1));
    auto groups = int_constant(n->input(1));
    const bool layer_norm = kind == "aten::layer_norm";
    if (!eps || (layer_norm ? !shape : !groups)) {
      m.why = "eps or the normalized shape / groups is not a constant";
      return m;
    }
    g.layer = layer_norm ? TapedLayer::kLayerNorm : TapedLayer::kGroupNorm;
    g.eps = *eps;
    if (layer_norm) g.normalized_shape = *shape;
    if (!layer_norm) g.groups = *groups;
    m.input = n->input(0), m.weight = n->input(2), m.bias = n->input(3);
  } else if (kind == "aten::batch_norm") {
    auto training = bool_constant(n->input(5));
    auto eps = double_constant(n->input(7));
    if (!training || *training || !eps || is_none(n->input(3)) || is_none(n->input(4))) {
      m.why = "not in eval mode with running statistics (batch statistics couple the examples)";
      return m;
    }
    g.layer = TapedLayer::kBatchNorm;
    g.eps = *eps;
    m.input = n->input(0), m.weight = n->input(1), m.bias = n->input(2);
    m.running_mean = n->input(3), m.running_var = n->input(4);
  } else if (kind == "aten::embedding") {
    auto padding_idx = int_constant(n->input(2));
    auto by_freq = bool_constant(n->input(3));
    if (!padding_idx || !by_freq || *by_freq) {
      m.why = "scale_grad_by_freq couples the examples (or its flags are not constants)";
      return m;
    }
    g.layer = TapedLayer::kEmbedding;
    g.padding_idx = *padding_idx;
    m.weight = n->input(0), m.input = n->input(1);
  }
  if (m.weight != nullptr && is_none(m.weight)) m.why = "it has no weight";
  return m;
}

// Eval-mode dropout (train = False) is the identity, in place or not: its uses read its input.
// Removing it first matters for Dropout(inplace=True) on a view (EfficientNet's classifier
// after flatten), which mutation removal has to keep and which would hide the next op's input.
void remove_eval_dropout(torch::jit::Block* block) {
  static const std::set<std::string> kinds = {"aten::dropout",
                                              "aten::dropout_",
                                              "aten::feature_dropout",
                                              "aten::feature_dropout_",
                                              "aten::alpha_dropout",
                                              "aten::alpha_dropout_",
                                              "aten::feature_alpha_dropout",
                                              "aten::feature_alpha_dropout_"};
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    Node* n = *it++;
    for (auto* b : n->blocks()) remove_eval_dropout(b);
    if (!kinds.count(kind_of(n)) || n->inputs().size() != 3 || n->outputs().size() != 1) continue;
    if (bool_constant(n->input(2)) != std::optional<bool>(false)) continue;
    n->output()->replaceAllUsesWith(n->input(0));
    n->destroy();
  }
}

// "aten::conv2d (layer1.0.conv1.weight)" for notes.
std::string op_label(const std::string& kind, const Value* weight, const Value* self) {
  const std::string path = weight != nullptr ? attribute_path(weight, self) : "";
  return kind + (path.empty() ? "" : " (" + path + ")");
}

// Notes the recognised ops under control flow: their values live inside a block, so the
// rewrite cannot return them (constant propagation has already removed the static branches).
void note_nested_ops(const torch::jit::Block& block, const Value* self, bool nested,
                     std::vector<std::string>* notes) {
  for (const Node* n : block.nodes()) {
    const std::string kind = kind_of(n);
    if (nested && is_recognised(kind)) {
      const Value* weight = kind == "aten::embedding" ? n->input(0) : n->input(1);
      notes->push_back(op_label(kind, weight, self) + ": inside data-dependent control flow");
    }
    for (const auto* b : n->blocks()) note_nested_ops(*b, self, /*nested=*/true, notes);
  }
}

}  // namespace

TapedScriptMethod::TapedScriptMethod(torch::jit::Module& module, const std::string& method)
    : module_(module) {
  auto graph = module.get_method(method).graph()->copy();
  if (graph->inputs().size() != 2 || graph->outputs().size() != 1) {
    notes_.push_back(method + " does not take one tensor and return one value");
    return;
  }
  // Inline inlines each callee's graph as it was compiled; a loaded module's callees may still
  // call further methods (nn.Conv2d.forward → _conv_forward), so repeat until none is left.
  for (int depth = 0; depth < 32 && has_calls(*graph->block()); ++depth) torch::jit::Inline(*graph);
  fold_plain_attributes(*graph, module, graph->block());
  torch::jit::ConstantPropagation(graph);
  // In-place ops (ReLU(inplace=True), `out += identity`, dropout_) would overwrite the values
  // the tape reads back after the forward: replace them by their functional forms wherever
  // alias analysis proves that this keeps the graph's meaning (the mutated value is fresh).
  remove_eval_dropout(graph->block());
  torch::jit::RemoveListMutation(graph);
  torch::jit::RemoveTensorMutation(graph);
  torch::jit::EliminateDeadCode(graph);
  const torch::jit::AliasDb aliases(graph);
  Value* self = graph->inputs()[0];
  note_nested_ops(*graph->block(), self, /*nested=*/false, &notes_);

  std::vector<Value*> outs{graph->outputs()[0]};
  auto slot = [&](Value* v) {
    outs.push_back(v);
    return static_cast<int>(outs.size()) - 1;
  };
  for (Node* n : graph->block()->nodes()) {  // top level only: values there outlive the forward
    const std::string kind = kind_of(n);
    if (!is_recognised(kind)) continue;
    MatchedOp m = match_op(n, kind);
    if (m.why.empty()) {
      for (Value* v : {m.input, n->output()}) {
        const std::string writer = written_in_place(v, aliases);
        if (!writer.empty()) {
          m.why = std::string(v == m.input ? "its input" : "its output") +
                  " is changed in place by " + writer;
          break;
        }
      }
    }
    if (!m.why.empty()) {
      const Value* weight =
          m.weight ? m.weight : (kind == "aten::embedding" ? n->input(0) : n->input(1));
      notes_.push_back(op_label(kind, weight, self) + ": " + m.why);
      continue;
    }
    Op op;
    op.geometry = m.geometry;
    op.input = slot(m.input);
    op.output = slot(n->output());
    op.weight = slot(m.weight);
    if (m.bias != nullptr && !is_none(m.bias)) op.bias = slot(m.bias);
    if (m.running_mean != nullptr) op.running_mean = slot(m.running_mean);
    if (m.running_var != nullptr) op.running_var = slot(m.running_var);
    ops_.push_back(std::move(op));
  }
  if (ops_.empty()) return;
  graph->setInsertPoint(graph->block()->return_node());
  Node* tuple = graph->insertNode(graph->createTuple(outs));
  graph->eraseOutput(0);
  graph->registerOutput(tuple->output());
  function_ = std::make_unique<torch::jit::GraphFunction>(method + "_nfk_taped", graph, nullptr);
}

c10::IValue TapedScriptMethod::run(const torch::Tensor& x) {
  TORCH_INTERNAL_ASSERT(function_ != nullptr, "TapedScriptMethod::run without recognised ops");
  torch::jit::Stack stack{module_._ivalue(), x};
  function_->run(stack);
  auto tuple = stack.back().toTuple();
  const auto& e = tuple->elements();
  LayerTape* tape = LayerTape::active();
  for (const Op& op : ops_) {
    if (tape == nullptr) break;
    if (!e[op.weight].isTensor()) continue;
    TapeRecord r = op.geometry;
    r.input = e[op.input].toTensor();
    r.output = e[op.output].toTensor();
    r.weight = e[op.weight].toTensor();
    if (op.bias >= 0 && e[op.bias].isTensor()) r.bias = e[op.bias].toTensor();
    if (op.running_mean >= 0) r.running_mean = e[op.running_mean].toTensor();
    if (op.running_var >= 0) r.running_var = e[op.running_var].toTensor();
    if (r.layer == TapedLayer::kConv2d || r.layer == TapedLayer::kConvTranspose2d) {
      if (r.weight.dim() != 4) continue;
      r.kernel = {r.weight.size(2), r.weight.size(3)};
    }
    tape->record(std::move(r));
  }
  return e[0];
}

}  // namespace nfk::detail
