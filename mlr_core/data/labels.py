"""The label encoding every reader writes and every consumer reads.

A target matrix is ``(N, C)`` int8 with 1 = positive, 0 = negative and :data:`IGNORE` = unknown (a VOC
"difficult" object under ``dataset.voc_difficult: ignore``, a label a partial-label budget withheld, a
``?`` entry of the generic manifest). Metrics drop IGNORE pairs; losses give them no gradient.
"""

#: Target value meaning "unknown": counted neither as positive nor as negative.
IGNORE = -1
