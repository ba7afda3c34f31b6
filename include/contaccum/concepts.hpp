#pragma once
/// \file
/// \brief Every concept of the library in one include: Encoder, BiEncoder, Pooler,
///        Similarity, ContrastiveLoss, Bank, Collective, Strategy/StrategyFor, Adapter.

#include <contaccum/adapters/full_fine_tune.hpp>
#include <contaccum/bank/concepts.hpp>
#include <contaccum/dist/single_process.hpp>
#include <contaccum/encoders/concepts.hpp>
#include <contaccum/loss/info_nce.hpp>
#include <contaccum/loss/similarity.hpp>
#include <contaccum/pooling/concepts.hpp>
#include <contaccum/strategy/concepts.hpp>
