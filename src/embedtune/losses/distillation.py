"""Distillation from teacher scores: MarginMSE and KL divergence, sentence-transformers' losses on cosine scores.

Both train on rows ``(query, positive, negative_1 … negative_n)`` whose label is the teacher's score of each candidate
``[s⁺, s⁻_1 … s⁻_n]`` (``pos_scores`` / ``neg_scores`` of a training file, as ``embedtune mine --teacher`` writes
them). The student scores a candidate ``scale · cos(q, d)``, the teacher ``teacher_scale · s``: with the defaults
(both 20) a teacher's cosines sit on the student's scale; a cross-encoder's logits want ``teacher_scale`` 1.

References:
    - MarginMSE: Hofstätter et al., "Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge
      Distillation", arXiv:2010.02666.
    - KL distillation: Hinton et al., "Distilling the Knowledge in a Neural Network", arXiv:1503.02531.
"""

from __future__ import annotations

import functools

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss, MarginMSELoss
from sentence_transformers.util import pairwise_cos_sim
from torch import Tensor


def scaled_pairwise_cos_sim(a: Tensor, b: Tensor, scale: float) -> Tensor:
    """Return ``scale · cos(a_i, b_i)`` row by row: ``(batch, dim)`` × ``(batch, dim)`` -> ``(batch,)``."""
    return scale * pairwise_cos_sim(a, b)


class MarginMSE(MarginMSELoss):
    """MSE between the student's and the teacher's margins ``score(q, d⁺) − score(q, d⁻_j)``, per hard negative.

    Args:
        model: The student.
        scale: Student score multiplier (inverse temperature) on the cosine.
        teacher_scale: Multiplier of the teacher's scores.

    Inputs:
        +---------------------------------------------+-------------------------------------------+
        | Texts                                       | Labels                                    |
        +=============================================+===========================================+
        | (query, positive, negative_1 … negative_n) | ``(batch, 1 + n)`` teacher scores [s⁺, s⁻] |
        +---------------------------------------------+-------------------------------------------+
    """

    def __init__(self, model: SentenceTransformer, scale: float = 20.0, teacher_scale: float = 20.0) -> None:
        super().__init__(model, similarity_fct=functools.partial(scaled_pairwise_cos_sim, scale=scale))
        self.teacher_scale = teacher_scale

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        """Return the scalar loss from ``2 + n`` column embeddings ``(batch, dim)`` and labels ``(batch, 1 + n)``."""
        return super().compute_loss_from_embeddings(embeddings, labels * self.teacher_scale)


def distill_kl_div(model: SentenceTransformer, scale: float = 20.0, teacher_scale: float = 20.0) -> DistillKLDivLoss:
    """KL(teacher ‖ student) over each row's candidates: softmax of ``teacher_scale · s`` vs of ``scale · cos``.

    Args:
        model: The student.
        scale: Student score multiplier (inverse temperature) on the cosine.
        teacher_scale: Multiplier of the teacher's scores (the inverse of the teacher's temperature).

    Returns:
        sentence-transformers' :class:`DistillKLDivLoss` at student temperature 1 over scaled cosines (so the loss is
        not rescaled by a temperature below 1), teacher temperature ``1 / teacher_scale``; labels ``(batch, 1 + n)``.
    """
    similarity = functools.partial(scaled_pairwise_cos_sim, scale=scale)
    return DistillKLDivLoss(model, similarity_fct=similarity, temperature=1.0, teacher_temperature=1.0 / teacher_scale)
