# Copyright 2025 The hf_supermask Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Corpus BLEU and chrF computed together with sacreBLEU, as an `evaluate` metric module.

`evaluate.load("sacrebleu")` / `evaluate.load("chrf")` fetch their scripts from the Hugging Face Hub and therefore fail
offline, and the `evaluate` wheel ships no metric scripts. This module follows the structure of the official
`sacrebleu` and `chrf` metrics of the evaluate repository, but is shipped inside `hf_supermask` and loaded by path
(see `hf_supermask.metrics.load_translation_metric`).
"""

import datasets
import evaluate
import sacrebleu as scb
from packaging import version
from sacrebleu.metrics import BLEU, CHRF


_CITATION = """\
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    month = oct,
    year = "2018",
    address = "Belgium, Brussels",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
@inproceedings{papineni-etal-2002-bleu,
    title = "{B}leu: a Method for Automatic Evaluation of Machine Translation",
    author = "Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing",
    booktitle = "Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics",
    month = jul,
    year = "2002",
    address = "Philadelphia, Pennsylvania, USA",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/P02-1040",
    doi = "10.3115/1073083.1073135",
    pages = "311--318",
}
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    month = sep,
    year = "2015",
    address = "Lisbon, Portugal",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W15-3049",
    doi = "10.18653/v1/W15-3049",
    pages = "392--395",
}
"""

_DESCRIPTION = """\
Corpus-level BLEU and chrF, both computed by sacreBLEU on detokenized text, returned together with their sacreBLEU
signatures so that reported numbers are reproducible and comparable.

BLEU uses sacreBLEU's default `13a` tokenizer (which mimics `mteval-v13a` from Moses) unless told otherwise; chrF is
character 6-grams with beta=2 (word_order=2 gives chrF++).

See https://github.com/mjpost/sacreBLEU for more information.
"""

_KWARGS_DESCRIPTION = """
Computes corpus BLEU and chrF of detokenized predictions against one or more references per prediction.

Args:
    predictions (`list` of `str`): detokenized translations to score.
    references (`list` of `str` or `list` of `list` of `str`): one reference string per prediction, or one sub-list
        of references per prediction (every sub-list must have the same length).
    tokenize (`str`, *optional*, defaults to `"13a"`): sacreBLEU tokenizer used by BLEU (`"13a"`, `"intl"`,
        `"char"`, `"none"`, ...).
    lowercase (`bool`, *optional*, defaults to `False`): case-insensitive scoring (both metrics).
    smooth_method (`str`, *optional*, defaults to `"exp"`): BLEU smoothing (`"none"`, `"floor"`, `"add-k"`, `"exp"`).
    smooth_value (`float`, *optional*): value for the `"floor"` / `"add-k"` smoothing methods.
    force (`bool`, *optional*, defaults to `False`): score even if the input looks tokenized.
    use_effective_order (`bool`, *optional*, defaults to `False`): BLEU effective n-gram order.
    char_order (`int`, *optional*, defaults to `6`): chrF character n-gram order.
    word_order (`int`, *optional*, defaults to `0`): chrF word n-gram order (`2` gives chrF++).
    beta (`int`, *optional*, defaults to `2`): chrF recall weight.
    whitespace (`bool`, *optional*, defaults to `False`): include whitespace in chrF character n-grams.
    eps_smoothing (`bool`, *optional*, defaults to `False`): chrF epsilon smoothing.

Returns:
    'bleu' (`float`): corpus BLEU (0-100),
    'chrf' (`float`): corpus chrF (0-100),
    'bleu_signature' (`str`): sacreBLEU signature of the BLEU computation,
    'chrf_signature' (`str`): sacreBLEU signature of the chrF computation,
    'counts' (`list` of `int`): matching n-gram counts, n = 1..4,
    'totals' (`list` of `int`): hypothesis n-gram totals, n = 1..4,
    'precisions' (`list` of `float`): n-gram precisions, n = 1..4,
    'bp' (`float`): brevity penalty,
    'sys_len' (`int`): hypothesis length in tokens,
    'ref_len' (`int`): reference length in tokens.

Examples:

    >>> metric = evaluate.load("path/to/hf_supermask/metrics/sacrebleu_chrf")
    >>> predictions = ["Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt."]
    >>> references = ["Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt."]
    >>> results = metric.compute(predictions=predictions, references=references)
    >>> print(round(results["bleu"], 1), round(results["chrf"], 1))
    100.0 100.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SacrebleuChrf(evaluate.Metric):
    def _info(self):
        if version.parse(scb.__version__) < version.parse("2.0.0"):
            raise ImportWarning(
                "To use `sacrebleu_chrf`, the module `sacrebleu>=2.0.0` is required, and the current version of "
                "`sacrebleu` doesn't match this condition.\n"
                'You can install it with `pip install "sacrebleu>=2.0.0"`.'
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            homepage="https://github.com/mjpost/sacreBLEU",
            inputs_description=_KWARGS_DESCRIPTION,
            # Two accepted input formats, as in the official metrics: several references per prediction, or one.
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(datasets.Value("string", id="sequence"), id="references"),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
            codebase_urls=["https://github.com/mjpost/sacreBLEU"],
            reference_urls=[
                "https://github.com/mjpost/sacreBLEU",
                "https://en.wikipedia.org/wiki/BLEU",
                "https://github.com/m-popovic/chrF",
            ],
        )

    def _compute(
        self,
        predictions,
        references,
        tokenize: str = "13a",
        lowercase: bool = False,
        smooth_method: str = "exp",
        smooth_value: float | None = None,
        force: bool = False,
        use_effective_order: bool = False,
        char_order: int = CHRF.CHAR_ORDER,
        word_order: int = CHRF.WORD_ORDER,
        beta: int = CHRF.BETA,
        whitespace: bool = False,
        eps_smoothing: bool = False,
    ):
        if len(predictions) == 0:
            raise ValueError("sacrebleu_chrf needs at least one prediction to score.")
        # If only one reference per prediction is given, still use a list of lists.
        if isinstance(references[0], str):
            references = [[ref] for ref in references]
        references_per_prediction = len(references[0])
        if any(len(refs) != references_per_prediction for refs in references):
            raise ValueError("sacreBLEU requires the same number of references for each prediction")
        # sacreBLEU wants one stream per reference set, i.e. the transpose of the per-prediction lists.
        transformed_references = [[refs[i] for refs in references] for i in range(references_per_prediction)]

        bleu = BLEU(
            lowercase=lowercase,
            force=force,
            tokenize=tokenize,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            effective_order=use_effective_order,
        )
        bleu_score = bleu.corpus_score(predictions, transformed_references)
        chrf = CHRF(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        chrf_score = chrf.corpus_score(predictions, transformed_references)

        return {
            "bleu": float(bleu_score.score),
            "chrf": float(chrf_score.score),
            "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature()),
            "counts": [int(c) for c in bleu_score.counts],
            "totals": [int(t) for t in bleu_score.totals],
            "precisions": [float(p) for p in bleu_score.precisions],
            "bp": float(bleu_score.bp),
            "sys_len": int(bleu_score.sys_len),
            "ref_len": int(bleu_score.ref_len),
        }
