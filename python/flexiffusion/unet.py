"""A diffusers UNet (UNet2DModel or UNet2DConditionModel) split at its skip branches, as the engine
numbers them (Sources/Engine/Plans/StepPlan.swift): branch 0 is conv_in's output, then every down
layer's and downsampler's output in order. A full pass runs the model's own forward and records,
for each wanted branch, the main-path feature entering the up resnet that concatenates that skip;
a partial pass runs conv_in, the down layers through the branch, and the up path from that resnet
fed with the recorded feature — DeepCache's shallow path (arXiv 2312.00858, §3.2). SDXL's added
embedding (`addition_embed_type` "text_time", from `added_cond_kwargs`) joins the time embedding of
both passes."""
import torch
from diffusers import UNet2DConditionModel, UNet2DModel

from .plan import PlanError

DOWN_TYPES = {"DownBlock2D", "AttnDownBlock2D", "CrossAttnDownBlock2D"}
UP_TYPES = {"UpBlock2D", "AttnUpBlock2D", "CrossAttnUpBlock2D"}


class SplitUNet:
    def __init__(self, unet):
        if not isinstance(unet, (UNet2DModel, UNet2DConditionModel)):
            raise PlanError(f"the pipeline's UNet is a {type(unet).__name__}; plans run on UNet2DModel and UNet2DConditionModel")
        self.unet = unet
        self.conditional = isinstance(unet, UNet2DConditionModel)
        c = unet.config
        for kind, types, allowed in (("down", c.down_block_types, DOWN_TYPES), ("up", c.up_block_types, UP_TYPES)):
            for t in types:
                if t not in allowed:
                    raise PlanError(f"{kind} block {t} is not split by plans (supported: {', '.join(sorted(allowed))})")
        if self.conditional:
            for key in ("class_embed_type", "addition_embed_type", "encoder_hid_dim_type", "time_cond_proj_dim"):
                if c.get(key) is not None and not (key == "addition_embed_type" and c.get(key) == "text_time"):
                    raise PlanError(f"unsupported {key} = {c.get(key)} for partial steps")
        else:
            if c.get("time_embedding_type", "positional") != "positional" or c.get("class_embed_type") is not None:
                raise PlanError("partial steps need a positional time embedding and no class conditioning")
            for key in ("downsample_type", "upsample_type"):
                if c.get(key, "conv") != "conv":
                    raise PlanError(f"unsupported {key} = {c.get(key)} for partial steps (only conv)")
        # The down path in skip order: (block, layer) of each skip after conv_in's; None = downsampler.
        self.down = []
        for i, block in enumerate(unet.down_blocks):
            self.down += [(i, j) for j in range(len(block.resnets))]
            if block.downsamplers is not None:
                self.down.append((i, None))
        # The up path in execution order: (block, layer); skip consumed = branch_count - 1 - position.
        self.up = [(i, j) for i, block in enumerate(unet.up_blocks) for j in range(len(block.resnets))]
        self.branch_count = 1 + len(self.down)
        if len(self.up) != self.branch_count:
            raise PlanError(f"the up path consumes {len(self.up)} skips, the down path makes {self.branch_count}")

    # -- the two passes ----------------------------------------------------------------------------

    def full(self, branches, forward, args, kwargs):
        """The UNet's own forward (`forward(*args, **kwargs)`), recording the features of `branches`;
        returns (output, {branch: feature})."""
        cache, hooks = {}, []
        for m in branches:
            i, j = self.up[self.branch_count - 1 - m]
            resnet = self.unet.up_blocks[i].resnets[j]

            def hook(module, hargs, hkwargs, m=m):
                x = hargs[0] if hargs else hkwargs["input_tensor"]
                cache[m] = x[:, : x.shape[1] - self._skip_channels(m)].detach().clone()

            hooks.append(resnet.register_forward_pre_hook(hook, with_kwargs=True))
        try:
            out = forward(*args, **kwargs)
        finally:
            for h in hooks:
                h.remove()
        missing = set(branches) - set(cache)
        if missing:
            raise PlanError(f"the full step did not reach branches {sorted(missing)}")
        return out, cache

    def partial(self, branch, feature, sample, timestep, encoder_hidden_states=None, attention_mask=None,
                cross_attention_kwargs=None, encoder_attention_mask=None, added_cond_kwargs=None):
        """The shallow path at `branch` fed with `feature`; returns the output tensor."""
        unet = self.unet
        emb = self._time_embedding(sample, timestep, encoder_hidden_states, added_cond_kwargs)
        if unet.config.center_input_sample:
            sample = 2 * sample - 1.0
        attn = dict(encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask,
                    cross_attention_kwargs=cross_attention_kwargs, encoder_attention_mask=encoder_attention_mask)
        skips = [unet.conv_in(sample)]
        for (i, j) in self.down[:branch]:
            block, h = unet.down_blocks[i], skips[-1]
            if j is None:
                h = block.downsamplers[0](h)
            else:
                h = block.resnets[j](h, emb)
                h = self._attend(block, j, h, attn)
            skips.append(h)
        h = feature
        for position, (i, j) in enumerate(self.up):
            m = self.branch_count - 1 - position
            if m > branch:
                continue
            block = unet.up_blocks[i]
            h = block.resnets[j](torch.cat([h, skips[m]], dim=1), emb)
            h = self._attend(block, j, h, attn)
            if j == len(block.resnets) - 1 and block.upsamplers is not None:
                h = block.upsamplers[0](h)
        if unet.conv_norm_out is not None:
            h = unet.conv_norm_out(h)
            h = unet.conv_act(h)
        return unet.conv_out(h)

    # -- pieces ------------------------------------------------------------------------------------

    def _skip_channels(self, m):
        c = self.unet.config.block_out_channels
        return c[0] if m == 0 else c[self.down[m - 1][0]]

    def _attend(self, block, j, h, attn):
        attentions = getattr(block, "attentions", None)
        if attentions is None or len(attentions) == 0:
            return h
        a = attentions[j]
        if self.conditional:
            return a(h, encoder_hidden_states=attn["encoder_hidden_states"], cross_attention_kwargs=attn["cross_attention_kwargs"],
                     attention_mask=attn["attention_mask"], encoder_attention_mask=attn["encoder_attention_mask"],
                     return_dict=False)[0]
        return a(h)

    def _time_embedding(self, sample, timestep, encoder_hidden_states=None, added_cond_kwargs=None):
        unet = self.unet
        if self.conditional:
            t_emb = unet.get_time_embed(sample=sample, timestep=timestep)
            emb = unet.time_embedding(t_emb, None)
            if unet.config.get("addition_embed_type") == "text_time":
                if added_cond_kwargs is None:
                    raise PlanError("SDXL's UNet needs added_cond_kwargs (text_embeds, time_ids) in a partial step too")
                emb = emb + unet.get_aug_embed(emb=emb, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added_cond_kwargs)
            if unet.time_embed_act is not None:
                emb = unet.time_embed_act(emb)
            return emb
        t = timestep
        if not torch.is_tensor(t):
            t = torch.tensor([t], dtype=torch.long, device=sample.device)
        elif t.dim() == 0:
            t = t[None].to(sample.device)
        t = t * torch.ones(sample.shape[0], dtype=t.dtype, device=t.device)
        return unet.time_embedding(unet.time_proj(t).to(dtype=unet.dtype))
