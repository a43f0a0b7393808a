"""Small deterministic models with whitespace-sensitive tokenizers, built offline in seconds.

The bundled MiniLM uses BERT WordPiece, which drops edge whitespace and treats "\\n" as a space,
so strip and newline divergences are invisible on it. These models make them visible:

    wordpiece  BERT, WordPiece, mean pooling, no Normalize module
    bpe        RoBERTa, byte-level BPE (keeps 'Ġ' and 'Ċ'), mean pooling, Normalize
    unigram    XLM-R, SentencePiece-style Unigram + Metaspace, CLS pooling, Normalize

Tokenizers are saved as PreTrainedTokenizerFast so transformers keeps our pipeline (its
XLMRobertaTokenizer class would rebuild the pre-tokenizer and collapse whitespace).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KINDS = ("wordpiece", "bpe", "unigram")
MAX_SEQ_LENGTH = 128
POSITIONS = 512
HIDDEN = 64
# Larger than the usual 0.02 so that different texts get clearly different vectors.
INIT_RANGE = 0.4

_WORDS = (
    "the a of to and in is it that for on with as was at by an be this from or have not are "
    "search index query vector embedding model token text whitespace newline tab space line "
    "cat dog house river city train ticket tea coffee rain sun cloud market price order refund "
    "password account login error memory server database table column row value number cost "
    "hello world good morning evening night summer winter spring autumn music piano guitar "
    "red green blue yellow black white small large quick slow open close read write run walk"
).split()
_CJK = "我们你他她的是在有这个那一不了人中国大小上下天地水火山学生老师今天明天文本向量模型检索"
_OTHER = "éèàçñüöäßøåæœ Привет мир مرحبا שלום नमस्ते 😀👍 café naïve"


# RoBERTa / XLM-R special tokens, in id order: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4
ROBERTA_SPECIAL_LIST = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "cls_token": "<s>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
}


def training_corpus() -> list[str]:
    """A fixed text list: every builtin-corpus text plus word and script samples."""
    from parity.texts import builtin_corpus

    lines = list(builtin_corpus())
    for i in range(len(_WORDS)):
        lines.append(" ".join(_WORDS[(i * 7 + j * 3) % len(_WORDS)] for j in range(12)))
    lines += [_CJK[i : i + 12] for i in range(0, len(_CJK), 6)]
    lines += [_OTHER, "line one\nline two\n\nindented\n    code", "\ttab\tseparated\tvalues"]
    return lines


def _wordpiece() -> Any:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(
        training_corpus(),
        trainers.WordPieceTrainer(vocab_size=1200, special_tokens=specials, show_progress=False),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return tok, {
        "cls_token": "[CLS]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "unk_token": "[UNK]",
        "mask_token": "[MASK]",
    }


def _bpe() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        training_corpus(),
        trainers.BpeTrainer(
            vocab_size=1200,
            special_tokens=ROBERTA_SPECIAL_LIST,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=False)
    return tok, ROBERTA_SPECIALS


def _unigram() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(
        training_corpus(),
        trainers.UnigramTrainer(
            vocab_size=1200,
            special_tokens=ROBERTA_SPECIAL_LIST,
            unk_token="<unk>",
            show_progress=False,
        ),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    return tok, ROBERTA_SPECIALS


def _config(kind: str, vocab_size: int, pad_id: int) -> Any:
    from transformers import BertConfig, RobertaConfig, XLMRobertaConfig

    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * HIDDEN,
        initializer_range=INIT_RANGE,
        pad_token_id=pad_id,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if kind == "wordpiece":
        return BertConfig(max_position_embeddings=POSITIONS, **common)
    cls = RobertaConfig if kind == "bpe" else XLMRobertaConfig
    return cls(
        max_position_embeddings=POSITIONS + 2,
        type_vocab_size=1,
        bos_token_id=0,
        eos_token_id=2,
        **common,
    )


def build_tiny_model(kind: str, out: str | Path, *, seed: int = 0) -> Path:
    """Build model `kind` into `out` (created) from `seed`; the same seed gives the same files."""
    import torch
    from transformers import AutoModel, PreTrainedTokenizerFast

    if kind not in KINDS:
        raise ValueError(f"unknown tiny model {kind!r}; choose from {', '.join(KINDS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok, specials = {"wordpiece": _wordpiece, "bpe": _bpe, "unigram": _unigram}[kind]()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=POSITIONS, **specials)
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    config = _config(kind, tok.get_vocab_size(), tok.token_to_id(specials["pad_token"]))
    model = AutoModel.from_config(config).eval()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one 0.1 s shard needs no bar
    model.save_pretrained(out)
    pooling = "cls" if kind == "unigram" else "mean"
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    if kind != "wordpiece":
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
    (out / "modules.json").write_text(json.dumps(modules, indent=2))
    (out / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False})
    )
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": HIDDEN,
                "pooling_mode_cls_token": pooling == "cls",
                "pooling_mode_mean_tokens": pooling == "mean",
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            },
            indent=2,
        )
    )
    return out
