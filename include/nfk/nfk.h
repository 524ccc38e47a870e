#pragma once
/// nfk's whole public API in one include. Installed with the library: a CMake project gets it with
///   find_package(nfk REQUIRED)  +  target_link_libraries(app PRIVATE nfk::nfk)
/// Example: `#include <nfk/nfk.h>` then `nfk::SvdOptions o; o.rank = 16; auto r = nfk::randomized_svd(op, o);`
/// Layers depend downward only (SPEC §4); each header below can also be included on its own.

// Bottom: data, distribution, progress, linear algebra.
#include "nfk/data.h"
#include "nfk/dist.h"
#include "nfk/messages.h"
#include "nfk/output_files.h"
#include "nfk/linalg.h"
#include "nfk/progress.h"
#include "nfk/run_options.h"
#include "nfk/sharded_operator.h"

// Models: the protocol, the per-example layer tape, the zoo.
#include "nfk/layer_tape.h"
#include "nfk/model.h"
#include "nfk/zoo.h"
#include "nfk/zoo_generative.h"
#include "nfk/zoo_wrn.h"

// Training: one loop with hooks (loss terms, gradient transforms, tasks), the zoo's trainers.
#include "nfk/continual.h"
#include "nfk/distill.h"
#include "nfk/ewc.h"
#include "nfk/natural_gradient.h"
#include "nfk/train.h"
#include "nfk/trainer.h"

// Fisher scores, the NFK projector, and what is built on it.
#include "nfk/classifier_fisher.h"
#include "nfk/distance.h"
#include "nfk/embed.h"
#include "nfk/features.h"
#include "nfk/fisher.h"
#include "nfk/gan_eval.h"
#include "nfk/kfac.h"
#include "nfk/knn.h"
#include "nfk/probe.h"
#include "nfk/semi_supervised.h"
