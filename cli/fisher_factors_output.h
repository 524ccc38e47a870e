#pragma once
// The K-FAC / EK-FAC output of `nfk fisher --form kfac|ekfac`.
#include <string>

#include "nfk/kfac.h"

namespace nfk::cli {

/// Writes `factors` to `out` as one NumPy .npz archive (an uncompressed zip that `np.load` reads),
/// replaced atomically like every nfk output (include/nfk/output_files.h: a directory is refused;
/// inside an OutputGroup it is staged like the others). Members, float64:
///   layerNN.<linear|conv2d>.A, .G          K-FAC's factors [in', in'], [out, out]
///   layerNN.<...>.QA, .QG, .scalings        EK-FAC only: eigenbases and S [out, in']
///   index.json                              (bytes) format, form, estimator, n_examples, P, the
///                                           layers' names, kinds, shapes, θ offsets, and the
///                                           parameters K-FAC leaves out, with reasons.
/// Python: `z = np.load(out); A = z["layer00.conv2d.A"]; json.loads(z["index.json"])`.
void write_kfac_factors(const std::string& out, const KfacFactors& factors);

}  // namespace nfk::cli
