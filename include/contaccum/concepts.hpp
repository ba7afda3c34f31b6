#pragma once
/// \file
/// \brief Every concept of the library in one include, and nothing else: each family's
///        concepts live beside it.
///  - encoders/: Encoder, BiEncoder          - pooling/: Pooler
///  - loss/: Similarity, ContrastiveLoss, SimilarityAwareLoss
///  - bank/: Bank, ScoreCachingBank          - dist/: Collective
///  - strategy/: EncodeSchedule(For), NegativePool(For), AccumulationPlan, Strategy(For)
///  - adapters/: Adapter, AdapterFor

#include <contaccum/adapters/concepts.hpp>
#include <contaccum/bank/concepts.hpp>
#include <contaccum/dist/concepts.hpp>
#include <contaccum/encoders/concepts.hpp>
#include <contaccum/loss/concepts.hpp>
#include <contaccum/pooling/concepts.hpp>
#include <contaccum/strategy/concepts.hpp>
