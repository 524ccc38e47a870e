// KfacFactors as an operator: F̃ v, (F̃ + λI)⁻¹ v and dense blocks. A layer's entries of v are
// read as matrices M [u, out, in'] (row-major vec(M) = v[theta_index]), on which the block
// kron(G, A) acts as M ↦ G M A, and any function of it through the eigenbases:
// Q_G (D ⊙ (Q_Gᵀ M Q_A)) Q_Aᵀ with D [out, in'] the function of the eigenvalues.
#include <cmath>

#include "nfk/kfac.h"

namespace nfk {
namespace {

// v [P] or [P, u] → float64 [P, u] on `device`.
torch::Tensor as_columns(const torch::Tensor& v, int64_t p, const torch::Device& device,
                         const char* what) {
  TORCH_CHECK(v.defined() && (v.dim() == 1 || v.dim() == 2) && v.size(0) == p, "nfk: ", what,
              " expects v [P] or [P, u] with P = ", p, ", got ",
              v.defined() ? c10::str(v.sizes()) : std::string("an undefined tensor"));
  TORCH_CHECK(v.is_floating_point(), "nfk: ", what, " expects a floating-point v, got ",
              v.scalar_type());
  auto v2 = v.dim() == 1 ? v.unsqueeze(1) : v;
  return v2.to(device, torch::kFloat64);
}

torch::Tensor layer_matrices(const KfacLayer& l, const torch::Tensor& v_pu) {
  return v_pu.index_select(0, l.theta_index).view({l.out(), l.in(), -1}).permute({2, 0, 1});
}

void put_layer(torch::Tensor& out_pu, const KfacLayer& l, const torch::Tensor& m_uoi) {
  out_pu.index_copy_(0, l.theta_index, m_uoi.permute({1, 2, 0}).reshape({-1, m_uoi.size(0)}));
}

torch::Tensor in_eigenbasis(const KfacLayer& l, const torch::Tensor& m_uoi,
                            const torch::Tensor& d_oi) {
  auto t = l.qg.t().matmul(m_uoi).matmul(l.qa);
  return l.qg.matmul(t * d_oi).matmul(l.qa.t());
}

torch::Device device_of(const KfacFactors& f, const torch::Tensor& v) {
  return f.layers.empty() ? v.device() : f.layers.front().a.device();
}

torch::Tensor shaped_like(const torch::Tensor& out_pu, const torch::Tensor& v) {
  auto r = out_pu.to(v.device(), v.scalar_type());
  return v.dim() == 1 ? r.squeeze(1) : r;
}

}  // namespace

torch::Tensor KfacFactors::mv(const torch::Tensor& v) const {
  auto v_pu = as_columns(v, num_params, device_of(*this, v), "KfacFactors::mv");
  auto out = torch::zeros_like(v_pu);
  for (const auto& l : layers) {
    auto m = layer_matrices(l, v_pu);
    put_layer(
        out, l,
        form == FisherForm::kEkfac ? in_eigenbasis(l, m, l.scalings) : l.g.matmul(m).matmul(l.a));
  }
  return shaped_like(out, v);
}

torch::Tensor KfacFactors::inverse_mv(const torch::Tensor& v, double damping,
                                      KfacDamping how) const {
  TORCH_CHECK(std::isfinite(damping) && damping > 0,
              "nfk: K-FAC's inverse needs a positive damping, got ", damping);
  TORCH_CHECK(how == KfacDamping::kExact || form == FisherForm::kKfac,
              "nfk: the factored Tikhonov damping is a K-FAC heuristic; EK-FAC damps its "
              "eigenbasis diagonal exactly (KfacDamping::kExact)");
  auto v_pu = as_columns(v, num_params, device_of(*this, v), "KfacFactors::inverse_mv");
  auto out = v_pu / damping;  // left-out parameters: zero curvature
  for (const auto& l : layers) {
    torch::Tensor d;  // the eigenvalues of the damped block, [out, in']
    if (form == FisherForm::kEkfac) {
      d = l.scalings + damping;
    } else if (how == KfacDamping::kExact) {
      d = torch::outer(l.eig_g, l.eig_a) + damping;
    } else {
      // π balances the two factors' average eigenvalues (Martens & Grosse 2015 §6.3).
      const double tr_a = l.eig_a.sum().item<double>() / static_cast<double>(l.in());
      const double tr_g = l.eig_g.sum().item<double>() / static_cast<double>(l.out());
      const double pi = tr_a > 0 && tr_g > 0 ? std::sqrt(tr_a / tr_g) : 1.0;
      const double root = std::sqrt(damping);
      d = torch::outer(l.eig_g + root / pi, l.eig_a + pi * root);
    }
    put_layer(out, l, in_eigenbasis(l, layer_matrices(l, v_pu), d.reciprocal()));
  }
  return shaped_like(out, v);
}

torch::Tensor KfacFactors::dense_block(size_t layer) const {
  TORCH_CHECK(layer < layers.size(), "nfk: K-FAC has ", layers.size(), " layers, asked for layer ",
              layer);
  const auto& l = layers[layer];
  if (form == FisherForm::kKfac) return torch::kron(l.g, l.a);
  auto q = torch::kron(l.qg, l.qa);
  return (q * l.scalings.reshape({1, -1})).mm(q.t());
}

torch::TensorOptions KfacOperator::options() const {
  auto o = torch::TensorOptions().dtype(torch::kFloat64);
  return factors_.layers.empty() ? o : o.device(factors_.layers.front().a.device());
}

}  // namespace nfk
