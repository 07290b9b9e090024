"""The algebraic identities the rewrites rely on, checked in float64."""

from __future__ import annotations

import torch


def test_batch_merge_commutes_with_matmul() -> None:
    """fold-views: matmul(merge(x), merge(y)) == merge(matmul(x, y)), also for operands
    whose batch dims are strided apart (a head split) so that merging them copies."""
    gen = torch.Generator().manual_seed(0)
    b, h, s, d = 2, 3, 5, 4
    q = torch.randn(b, s, h, d, generator=gen, dtype=torch.float64).transpose(1, 2)
    k = torch.randn(b, s, h, d, generator=gen, dtype=torch.float64).permute(0, 2, 3, 1)
    assert not q.is_contiguous() and not k.is_contiguous()
    merged = torch.bmm(q.reshape(b * h, s, d), k.reshape(b * h, d, s))
    unmerged = torch.matmul(q, k).reshape(b * h, s, s)
    torch.testing.assert_close(unmerged, merged, rtol=0, atol=1e-12)


def test_row_and_column_scales_are_broadcasts() -> None:
    """fuse-epilogues: scale by a row ([N]) or column ([M, 1]) vector is the
    elementwise product with its broadcast, so it may run per output tile."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    w = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    row = torch.randn(7, generator=gen, dtype=torch.float64)
    col = torch.randn(6, 1, generator=gen, dtype=torch.float64)
    acc = x @ w
    torch.testing.assert_close((acc * row)[2:4, 3:6], acc[2:4, 3:6] * row[3:6])
    torch.testing.assert_close((acc * col)[2:4, 3:6], acc[2:4, 3:6] * col[2:4])


def test_sum_over_count_is_mean() -> None:
    """canonicalize: sum(x) / N is mean(x) (float64), and for N a power of two
    sum(x) * (1/N) rounds exactly like sum(x) / N (float32, bit for bit): 1/N is exact
    and scaling by a power of two only shifts the exponent."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 64, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(x.sum(-1) / 64, x.mean(-1), rtol=1e-15, atol=0)
    for n in (2, 64, 1024):
        s = torch.randn(4096, generator=gen, dtype=torch.float32) * 1e3
        assert torch.equal(s * (1 / n), s / n)
    s = torch.randn(4096, generator=gen, dtype=torch.float32)
    assert not torch.equal(s * torch.tensor(1 / 6, dtype=torch.float32), s / 6)  # hence the rule


def test_sum_over_a_symbolic_count_is_mean() -> None:
    """canonicalize on symbolic sizes: sum(x) / graph.size is mean(x) when the size's
    expression is the count of the reduced dims (here 2*s0 of [3, 2*s0]), at every
    size the graph is later bound to (float64)."""
    from coda.dialects.graph_dims import bind_dim, canonical, parse_dim

    count = canonical(parse_dim("2*s0"))
    gen = torch.Generator().manual_seed(0)
    for s0 in range(2, 12):
        n = bind_dim(count, {"s0": s0})
        x = torch.randn(3, n, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(x.sum(-1) / n, x.mean(-1), rtol=1e-15, atol=0)


def test_sum_of_gemms_is_one_gemm_over_concatenated_k() -> None:
    """fuse-epilogues: a @ b + c @ d == [a | c] @ [b ; d], so a sum of GEMMs with the
    same output tile (even of different K) accumulates in one accumulator, one K loop
    after the other; and each output tile of it only needs the same tile's rows of a, c
    and columns of b, d."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(s, generator=gen, dtype=torch.float64) for s in ((6, 5), (5, 7)))
    c, d = (torch.randn(s, generator=gen, dtype=torch.float64) for s in ((6, 3), (3, 7)))
    concatenated = torch.cat([a, c], dim=1) @ torch.cat([b, d], dim=0)
    torch.testing.assert_close(a @ b + c @ d, concatenated, rtol=1e-14, atol=1e-14)
    tile = a[2:4] @ b[:, 3:6] + c[2:4] @ d[:, 3:6]
    torch.testing.assert_close(tile, concatenated[2:4, 3:6], rtol=1e-14, atol=1e-14)


def test_expand_commutes_with_pointwise_and_is_broadcasting() -> None:
    """canonicalize: fn(expand(a), c) == expand(fn(a, c)) for splat scalars c, and
    fn(expand(a), b) == fn(a, b) when a and b broadcast to the same shape."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4, 1, generator=gen, dtype=torch.float64)
    b = torch.randn(4, 8, generator=gen, dtype=torch.float64)
    c = torch.tensor(8.0, dtype=torch.float64)
    expanded = a.expand(4, 8)
    assert torch.equal(expanded / c, (a / c).expand(4, 8))
    assert torch.equal(torch.nn.functional.silu(expanded), torch.nn.functional.silu(a).expand(4, 8))
    assert torch.equal(expanded * b, a * b)


def test_rearranging_commutes_with_elementwise_functions() -> None:
    """canonicalize: cat(f(a, b)[..., h:], f(a, b)[..., :h]) is f(cat(a[..., h:],
    a[..., :h]), cat(b'[..., h:], b'[..., :h])) with b' = b broadcast to a's shape."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2, 3, 8, generator=gen, dtype=torch.float64)
    b = torch.randn(8, generator=gen, dtype=torch.float64)
    p = a * b
    left = torch.cat([p[..., 4:], p[..., :4]], dim=-1)
    wide = b.expand(2, 3, 8)
    right = torch.cat([a[..., 4:], a[..., :4]], -1) * torch.cat([wide[..., 4:], wide[..., :4]], -1)
    assert torch.equal(left, right)


def test_reduction_over_size_one_dims_is_the_input() -> None:
    """canonicalize: every reduction kind over dims of size 1 returns its input exactly
    (float32, bit for bit, including -inf and NaN), so dropping it changes nothing."""
    x = torch.tensor([[[1.5]], [[-2.25]], [[float("-inf")]], [[float("nan")]]])
    for reduce in (torch.sum, torch.mean, torch.amax, torch.amin, torch.logsumexp):
        torch.testing.assert_close(
            reduce(x, (1, 2), keepdim=True), x, rtol=0, atol=0, equal_nan=True
        )


class _MaxThenSoftmax(torch.nn.Module):
    """The fuzzer's case: a max over a size-1 dim, then a softmax over it."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.softmax((x * self.w).amax(-1, keepdim=True), -1)


def test_max_then_softmax_over_a_size_one_dim_compiles_and_matches_eager() -> None:
    torch.manual_seed(0)
    torch._dynamo.reset()
    model = _MaxThenSoftmax()
    x = torch.randn(3, 1, requires_grad=True)
    expected = model(x)
    expected.sum().backward()
    grads = [x.grad.clone(), model.w.grad.clone()]
    x.grad, model.w.grad = None, None
    compiled = torch.compile(model, backend="coda", options={"strict": True})
    got = compiled(x)
    got.sum().backward()
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close([x.grad, model.w.grad], grads)
