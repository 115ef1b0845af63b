// The `flexiffusion` executable: the command line FlexiffusionCLI holds (its commands and what they share).
import FlexiffusionCLI

runFlexiffusion()
