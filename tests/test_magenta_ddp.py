"""SlimBatchNorm2d under torch.distributed: two gloo processes, each with half of a batch, against one process with all of it."""
import datetime

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from balstyle.transfer.magenta import SlimBatchNorm2d

WORLD = 2


def _batches():
    "Two fixed training batches whose halves differ, and the loss weights (the loss is Σ output · weight)."
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(4, 3, 6, 5, generator=gen) * 2 + 1 for _ in range(2)]
    for x in xs: x[2:] += torch.tensor([3.0, -2.0, 0.5])[:, None, None]
    return xs, torch.randn(4, 3, 6, 5, generator=gen), torch.randn(4, 4, 6, 5, generator=gen)


def _bn():
    torch.manual_seed(1)
    bn = SlimBatchNorm2d(3, momentum=0.3)
    with torch.no_grad(): bn.bias.normal_()
    return bn


def _net():
    "Convolutions with slim batch norms, as in the transformer's contraction and the predictor."
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, bias=False), SlimBatchNorm2d(5, momentum=0.2), nn.ReLU(),
                        nn.Conv2d(5, 4, 1, bias=False), SlimBatchNorm2d(4))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, SlimBatchNorm2d): m.bias.normal_()
    return net.train()


def _run(module, xs, w, part=slice(None)):
    "Training steps (forward, loss Σ y·w, backward) on each `xs[i][part]`: the first step's output, input and parameter gradients, and the buffers after all."
    first = None
    for x in xs:
        module.zero_grad()
        x = x[part].clone().requires_grad_(True)
        y = module(x)
        (y * w[part]).sum().backward()
        inner = getattr(module, "module", module)
        if first is None: first = dict(out=y.detach(), input_grad=x.grad, grads={n: p.grad.clone() for n, p in inner.named_parameters()})
    return first | {"buffers": {k: v.clone() for k, v in inner.state_dict().items() if "running" in k or "num_batches" in k}}


def _worker(rank, init, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    try:
        xs, w_bn, w_net = _batches()
        part = slice(rank * 2, rank * 2 + 2)
        results = {}
        results["bn"] = _run(_bn(), xs, w_bn, part)
        results["ddp"] = _run(nn.parallel.DistributedDataParallel(_net()), xs, w_net, part)   # DDP averages parameter gradients
        plain = _bn()                                              # what a process without the sync computes
        results["unsynced"] = dict(out=nn.BatchNorm2d.forward(plain, xs[0][part]).detach(), running_mean=plain.running_mean)
        if rank == 0:                                              # alone and without autograd, as the re-estimation after training
            alone = _bn()
            with torch.no_grad(): alone(xs[0][part])
            results["alone"] = alone.running_mean
        dist.barrier()
        torch.save(results, out / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(f"file://{out / 'rendezvous'}", out), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.fixture(scope="module")
def whole():
    "One process, the whole batch: the plain batch norm (torch.distributed is not initialised here)."
    assert not dist.is_initialized()
    xs, w_bn, w_net = _batches()
    return {"bn": _run(_bn(), xs, w_bn), "ddp": _run(_net(), xs, w_net)}


def _close(a, b): torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", ["bn", "ddp"])
def test_two_processes_equal_one_with_the_whole_batch(ranks, whole, case):
    want = whole[case]
    _close(torch.cat([r[case]["out"] for r in ranks]), want["out"])
    _close(torch.cat([r[case]["input_grad"] for r in ranks]), want["input_grad"])
    for r in ranks:
        assert r[case]["buffers"].keys() == want["buffers"].keys()
        for k, v in want["buffers"].items(): _close(r[case]["buffers"][k], v)
    for name, g in want["grads"].items():
        if case == "ddp":          # DDP's gradient is the mean over the processes of each one's Σ y·w on its half
            for r in ranks: _close(r[case]["grads"][name] * WORLD, g)
        else:                      # without DDP each process holds the gradient of its own half's loss
            _close(sum(r[case]["grads"][name] for r in ranks), g)


def test_without_the_sync_each_process_would_normalise_with_its_own_half(ranks):
    "The data make the test above sensitive: each process's own statistics are far from the whole batch's."
    xs, _, _ = _batches()
    one = _bn()
    y = one(xs[0])
    for r in ranks: assert (r["unsynced"]["running_mean"] - one.running_mean).abs().max() > 0.1
    assert (torch.cat([r["unsynced"]["out"] for r in ranks]) - y).abs().max() > 0.1


def test_a_training_mode_forward_without_autograd_stays_local(ranks):
    "Rank 0 alone (the trainer's batch-norm re-estimation) neither waits for rank 1 nor uses its statistics."
    torch.testing.assert_close(ranks[0]["alone"], ranks[0]["unsynced"]["running_mean"])

