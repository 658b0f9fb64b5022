// The one header a Tessel user includes: the DSL (graphs, tensors, ops, initialisers,
// optimizers), core types, the runtime that executes graphs, and a rank's membership of a job
// of several processes (comm/job.h).
#pragma once

#include "core/dtype.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/shape.h"
#include "core/tensor.h"
#include "comm/job.h"
#include "graph/compile.h"
#include "graph/graph.h"
#include "graph/serialize.h"
#include "ops/ops.h"
#include "runtime/interpreter.h"
#include "runtime/session.h"
#include "sbp/sbp.h"
