// The segment-wise search space (Flexiffusion): filled in by the search issue.
