"""The StrSR generator and its parts: the diffusers backbones and autoencoders, the latent conventions, LoRA, the
conditioning (null, text, the VLM dual encoder and its adapter), attention processors, checkpoints, and
`build.build_generator`, which assembles it all from a `strsr.spec.ModelSpec`."""
