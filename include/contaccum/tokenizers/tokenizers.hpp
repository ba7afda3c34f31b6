#pragma once
/// \file
/// \brief The tokenizer family: WordPiece, byte-level BPE, Unigram, load_tokenizer, encode_batch.

#include <contaccum/tokenizers/auto.hpp>
#include <contaccum/tokenizers/batch.hpp>
#include <contaccum/tokenizers/byte_level_bpe.hpp>
#include <contaccum/tokenizers/concepts.hpp>
#include <contaccum/tokenizers/unigram.hpp>
#include <contaccum/tokenizers/wordpiece.hpp>
