#pragma once
/// \file
/// \brief Umbrella header: the whole public library.

#include <contaccum/version.hpp>
#include <contaccum/concepts.hpp>
#include <contaccum/detail/config_io.hpp>
#include <contaccum/data/batch.hpp>
#include <contaccum/data/synthetic.hpp>
#include <contaccum/encoders/bert.hpp>
#include <contaccum/encoders/dual_encoder.hpp>
#include <contaccum/pooling/cls.hpp>
#include <contaccum/pooling/mean.hpp>
#include <contaccum/loss/similarity.hpp>
#include <contaccum/loss/info_nce.hpp>
#include <contaccum/bank/ring_buffer.hpp>
#include <contaccum/bank/dual_bank.hpp>
#include <contaccum/strategy/full_batch.hpp>
#include <contaccum/strategy/grad_accum.hpp>
#include <contaccum/strategy/grad_cache.hpp>
#include <contaccum/strategy/cont_accum.hpp>
#include <contaccum/adapters/full_fine_tune.hpp>
#include <contaccum/compute/memory.hpp>
#include <contaccum/train/optim.hpp>
#include <contaccum/train/stats.hpp>
#include <contaccum/train/trainer.hpp>
