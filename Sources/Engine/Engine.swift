// The model graph, weights, schedulers and step plans: filled in by the UNet issue.
import GPUKernels
