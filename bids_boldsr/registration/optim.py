"""A minimal Adam with cosine learning-rate decay.

Hand-written because ``torch.optim`` imports torch._dynamo (~3 s on first use), which would
dominate a few-second registration.
"""
from __future__ import annotations

import math

import torch


class Adam:
    def __init__(self, params, lr: float, iters: int, lr_min_frac: float = 0.1,
                 betas=(0.9, 0.999), eps=1e-8):
        self.params = [params] if isinstance(params, torch.Tensor) else list(params)
        self.lr, self.iters, self.lr_min = lr, max(iters, 1), lr * lr_min_frac
        self.b1, self.b2, self.eps, self.t = betas[0], betas[1], eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self):
        lr = self.lr_min + (self.lr - self.lr_min) * 0.5 * (1 + math.cos(math.pi * self.t / self.iters))
        self.t += 1
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(self.b1).add_(p.grad, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(p.grad, p.grad, value=1 - self.b2)
            denom = (v / (1 - self.b2 ** self.t)).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-lr / (1 - self.b1 ** self.t))
            p.grad = None
