#include "models/torchscript_tape.h"

#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>

#include <deque>
#include <optional>

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

// An op whose input or output is later changed in place cannot be read back after the forward.
bool changed_in_place(const Value* v) {
  for (const auto& use : v->uses()) {
    const std::string name = use.user->kind().toUnqualString();
    if (use.user->kind().is_aten() && !name.empty() && name.back() == '_') return true;
  }
  return false;
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

}  // namespace

TapedScriptMethod::TapedScriptMethod(torch::jit::Module& module, const std::string& method)
    : module_(module) {
  auto graph = module.get_method(method).graph()->copy();
  if (graph->inputs().size() != 2 || graph->outputs().size() != 1) return;
  // Inline inlines each callee's graph as it was compiled; a loaded module's callees may still
  // call further methods (nn.Conv2d.forward → _conv_forward), so repeat until none is left.
  for (int depth = 0; depth < 32 && has_calls(*graph->block()); ++depth) torch::jit::Inline(*graph);
  fold_plain_attributes(*graph, module, graph->block());
  torch::jit::ConstantPropagation(graph);
  torch::jit::EliminateDeadCode(graph);

  std::vector<Value*> outs{graph->outputs()[0]};
  auto slot = [&](Value* v) {
    outs.push_back(v);
    return static_cast<int>(outs.size()) - 1;
  };
  for (Node* n : graph->block()->nodes()) {  // top level only: values there outlive the forward
    const std::string kind = kind_of(n);
    Op op;
    Value *input = nullptr, *weight = nullptr, *bias = nullptr;
    TapeRecord& g = op.geometry;
    if (kind == "aten::linear") {
      g.layer = TapedLayer::kLinear;
      input = n->input(0), weight = n->input(1), bias = n->input(2);
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
        continue;
      }
      g.layer = *transposed ? TapedLayer::kConvTranspose2d : TapedLayer::kConv2d;
      g.stride = *stride, g.padding = *padding, g.dilation = *dilation, g.groups = *groups;
      input = n->input(0), weight = n->input(1), bias = n->input(2);
    } else if (kind == "aten::layer_norm" || kind == "aten::group_norm") {
      auto eps = double_constant(n->input(4));
      if (!eps) continue;
      g.eps = *eps;
      if (kind == "aten::layer_norm") {
        auto shape = int_list(n->input(1));
        if (!shape) continue;
        g.layer = TapedLayer::kLayerNorm;
        g.normalized_shape = *shape;
      } else {
        auto groups = int_constant(n->input(1));
        if (!groups) continue;
        g.layer = TapedLayer::kGroupNorm;
        g.groups = *groups;
      }
      input = n->input(0), weight = n->input(2), bias = n->input(3);
    } else if (kind == "aten::batch_norm") {
      auto training = bool_constant(n->input(5));
      auto eps = double_constant(n->input(7));
      if (!training || *training || !eps || is_none(n->input(3)) || is_none(n->input(4))) continue;
      g.layer = TapedLayer::kBatchNorm;
      g.eps = *eps;
      input = n->input(0), weight = n->input(1), bias = n->input(2);
      op.running_mean = slot(n->input(3));
      op.running_var = slot(n->input(4));
    } else if (kind == "aten::embedding") {
      auto padding_idx = int_constant(n->input(2));
      auto by_freq = bool_constant(n->input(3));
      if (!padding_idx || !by_freq || *by_freq) continue;
      g.layer = TapedLayer::kEmbedding;
      g.padding_idx = *padding_idx;
      weight = n->input(0), input = n->input(1);
    } else {
      continue;
    }
    if (is_none(weight) || changed_in_place(input) || changed_in_place(n->output())) continue;
    op.input = slot(input);
    op.output = slot(n->output());
    op.weight = slot(weight);
    if (bias != nullptr && !is_none(bias)) op.bias = slot(bias);
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
