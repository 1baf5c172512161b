"""Tests for magenta.py (pytest; < 60 s on 2 CPU cores)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from balstyle.transfer.magenta import (BOTTLENECK_DIM, MAGENTA, STYLE_SITES, Magenta, SlimBatchNorm2d, StylePredictor,
                     Transformer, _smallest_side_size, conditional_style_norm, imagenet_inception_file,
                     load_imagenet_predictor, load_tf_variables, magenta_style_image, magenta_variable_names,
                     tf_resize_bilinear, tf_to_torch_names)

torch.set_num_threads(2)


def _numel(shape):
    return int(np.prod(shape, dtype=np.int64))


def _random_variables(seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in magenta_variable_names().items():
        arr = rng.standard_normal(shape).astype(np.float32)
        if name.endswith("moving_variance"):
            arr = np.abs(arr) + 0.5
        out[name] = arr
    return out


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Magenta().eval()


@pytest.fixture(scope="module")
def loaded():
    variables = _random_variables()
    return load_tf_variables(Magenta(), variables).eval(), variables


# ----------------------------------------------------------------- names / shapes
def test_variable_names_and_shapes():
    names = magenta_variable_names()
    expected = {
        "transformer/contract/conv1/weights": (9, 9, 3, 32),
        "transformer/contract/conv1/BatchNorm/beta": (32,),
        "transformer/contract/conv1/BatchNorm/moving_mean": (32,),
        "transformer/contract/conv1/BatchNorm/moving_variance": (32,),
        "transformer/contract/conv2/weights": (3, 3, 32, 64),
        "transformer/contract/conv3/weights": (3, 3, 64, 128),
        "transformer/residual/residual1/conv1/weights": (3, 3, 128, 128),
        "transformer/residual/residual5/conv2/weights": (3, 3, 128, 128),
        "transformer/expand/conv1/conv/weights": (3, 3, 128, 64),
        "transformer/expand/conv2/conv/weights": (3, 3, 64, 32),
        "transformer/expand/conv3/conv/weights": (9, 9, 32, 3),
        "InceptionV3/Conv2d_1a_3x3/weights": (3, 3, 3, 32),
        "InceptionV3/Conv2d_1a_3x3/BatchNorm/beta": (32,),
        "InceptionV3/Conv2d_1a_3x3/BatchNorm/moving_mean": (32,),
        "InceptionV3/Conv2d_1a_3x3/BatchNorm/moving_variance": (32,),
        "InceptionV3/Conv2d_2b_3x3/weights": (3, 3, 32, 64),
        "InceptionV3/Conv2d_4a_3x3/weights": (3, 3, 80, 192),
        "InceptionV3/Mixed_5b/Branch_1/Conv2d_0b_5x5/weights": (5, 5, 48, 64),
        "InceptionV3/Mixed_5b/Branch_3/Conv2d_0b_1x1/weights": (1, 1, 192, 32),
        "InceptionV3/Mixed_5c/Branch_1/Conv2d_0b_1x1/weights": (1, 1, 256, 48),
        "InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5/weights": (5, 5, 48, 64),
        "InceptionV3/Mixed_6a/Branch_0/Conv2d_1a_1x1/weights": (3, 3, 288, 384),
        "InceptionV3/Mixed_6a/Branch_1/Conv2d_1a_1x1/weights": (3, 3, 96, 96),
        "InceptionV3/Mixed_6b/Branch_1/Conv2d_0b_1x7/weights": (1, 7, 128, 128),
        "InceptionV3/Mixed_6b/Branch_1/Conv2d_0c_7x1/weights": (7, 1, 128, 192),
        "InceptionV3/Mixed_6c/Branch_2/Conv2d_0b_7x1/weights": (7, 1, 160, 160),
        "InceptionV3/Mixed_6e/Branch_2/Conv2d_0e_1x7/weights": (1, 7, 192, 192),
        "InceptionV3/Mixed_6e/Branch_3/Conv2d_0b_1x1/BatchNorm/moving_variance": (192,),
        "Conv/weights": (1, 1, 768, 100),
        "Conv/biases": (100,),
        "style_params/transformer/residual/residual1/conv1/StyleNorm/Conv/weights": (1, 1, 100, 128),
        "style_params/transformer/residual/residual1/conv1/StyleNorm/Conv/biases": (128,),
        "style_params/transformer/residual/residual1/conv1/StyleNorm/Conv_1/weights": (1, 1, 100, 128),
        "style_params/transformer/expand/conv3/conv/StyleNorm/Conv_1/biases": (3,),
    }
    for name, shape in expected.items():
        assert names[name] == shape, name
    # no gamma anywhere, no Mixed_7*, no biases on normalised convs
    assert not any("gamma" in n or "Mixed_7" in n for n in names)
    assert not any(n.endswith("biases") and not (n.startswith("Conv/") or n.startswith("style_params/"))
                   for n in names)
    # 13 sites x {Conv, Conv_1} x {weights, biases}
    assert sum(n.startswith("style_params/") for n in names) == 13 * 4
    inception_convs = [n for n in names if n.startswith("InceptionV3/") and n.endswith("/weights")]
    assert len(inception_convs) == 5 + 3 * 7 + 4 + 4 * 10  # stem, 5b-d, 6a, 6b-e
    assert len(names) == 359


def test_style_sites():
    assert len(STYLE_SITES) == 13
    assert [s for s, _ in STYLE_SITES][:2] == ["residual/residual1/conv1", "residual/residual1/conv2"]
    assert [s for s, _ in STYLE_SITES][-3:] == ["expand/conv1/conv", "expand/conv2/conv",
                                                 "expand/conv3/conv"]
    assert sum(d for _, d in STYLE_SITES) == 1379


def test_style_param_count_and_mixed_6e(model):
    with torch.no_grad():
        style = torch.rand(2, 3, 256, 256)
        feats = model.predictor.features(style)
        assert feats.shape == (2, 768, 14, 14)          # slim's comment: 14x14 for 256
        assert model.predictor.features(torch.rand(1, 3, 299, 299)).shape == (1, 768, 17, 17)
        emb = model.embedding(style)
        assert emb.shape == (2, BOTTLENECK_DIM)
        params = model.predictor.style_params(emb)
    assert list(params) == [s for s, _ in STYLE_SITES]
    for site, depth in STYLE_SITES:
        beta, gamma = params[site]
        assert beta.shape == gamma.shape == (2, depth)
    assert sum(b.shape[1] + g.shape[1] for b, g in params.values()) == 2758


# ----------------------------------------------------------------- loading
def test_load_sets_every_parameter_and_buffer(loaded):
    model, variables = loaded
    table = tf_to_torch_names(model)
    state = model.state_dict()
    covered = set(table.values())
    expected_keys = {k for k in state if not k.endswith("num_batches_tracked")}
    assert covered == expected_keys
    for name, key in table.items():
        want = torch.from_numpy(variables[name])
        if want.ndim == 4:
            want = want.permute(3, 2, 0, 1)
        assert torch.equal(state[key], want), name
    # one HWIO -> OIHW permutation, element by element
    tf_k = variables["transformer/contract/conv1/weights"]          # [9, 9, 3, 32]
    w = model.transformer.contract["conv1"].conv.weight.detach().numpy()  # [32, 3, 9, 9]
    assert w.shape == (32, 3, 9, 9)
    for h, ww, i, o in np.ndindex(*tf_k.shape):
        assert tf_k[h, ww, i, o] == w[o, i, h, ww]
    # bn beta / moving stats of a predictor conv land in the right buffers
    bn = model.predictor.Mixed_6e.branch7x7dbl_5.bn
    np.testing.assert_array_equal(
        bn.running_var.numpy(),
        variables["InceptionV3/Mixed_6e/Branch_2/Conv2d_0e_1x7/BatchNorm/moving_variance"])
    np.testing.assert_array_equal(
        model.predictor.heads["expand_conv3_conv"].gamma.bias.detach().numpy(),
        variables["style_params/transformer/expand/conv3/conv/StyleNorm/Conv_1/biases"])


def test_load_accepts_torch_tensors_suffix_and_ignores_optimizer_slots():
    variables = {f"{k}:0": torch.from_numpy(v) for k, v in _random_variables(1).items()}
    variables["global_step"] = np.array(10, dtype=np.int64)
    variables["Conv/weights/Adam"] = np.zeros((1, 1, 768, 100), np.float32)
    variables["Conv/weights/Adam_1"] = np.zeros((1, 1, 768, 100), np.float32)
    variables["beta1_power"] = np.float32(0.9)
    model = load_tf_variables(Magenta(), variables)
    assert torch.equal(model.predictor.bottleneck.bias, variables["Conv/biases:0"])


@pytest.mark.parametrize("case", ["missing", "extra", "misshaped", "all"])
def test_load_errors_name_the_offenders(case):
    variables = _random_variables(2)
    miss = "InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5/weights"
    extra = "transformer/residual/residual6/conv1/weights"
    bad = "style_params/transformer/expand/conv2/conv/StyleNorm/Conv/weights"
    if case in ("missing", "all"):
        del variables[miss]
    if case in ("extra", "all"):
        variables[extra] = np.zeros((3, 3, 128, 128), np.float32)
    if case in ("misshaped", "all"):
        variables[bad] = np.zeros((1, 1, 100, 33), np.float32)
    model = Magenta()
    before = model.state_dict()["predictor.bottleneck.weight"].clone()
    with pytest.raises(ValueError) as err:
        load_tf_variables(model, variables)
    msg = str(err.value)
    for flag, name in (("missing", miss), ("extra", extra), ("misshaped", bad)):
        assert (name in msg) == (case in (flag, "all")), (case, name)
    if case in ("misshaped", "all"):
        assert "[1, 1, 100, 32]" in msg and "[1, 1, 100, 33]" in msg
    # nothing was copied
    assert torch.equal(model.state_dict()["predictor.bottleneck.weight"], before)


# ----------------------------------------------------------------- layer semantics
def test_conditional_style_norm_direct():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 5, 3))
    beta, gamma = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    want = np.empty_like(x)
    for b in range(2):
        for c in range(4):
            v = x[b, c]
            want[b, c] = (v - v.mean()) / math.sqrt(v.var() + 1e-5) * gamma[b, c] + beta[b, c]
    got = conditional_style_norm(torch.from_numpy(x), torch.from_numpy(beta), torch.from_numpy(gamma))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10)
    # batch-1 params broadcast over the batch
    got1 = conditional_style_norm(torch.from_numpy(x), torch.from_numpy(beta[:1]),
                                  torch.from_numpy(gamma[:1]))
    np.testing.assert_allclose(got1.numpy()[1], conditional_style_norm(
        torch.from_numpy(x[1:]), torch.from_numpy(beta[:1]), torch.from_numpy(gamma[:1])).numpy()[0])


def test_slim_batch_norm_has_no_gamma_and_matches_tf_formula():
    bn = SlimBatchNorm2d(3).double().eval()
    assert [n for n, _ in bn.named_parameters()] == ["bias"]
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_mean.copy_(torch.tensor([0.1, 0.2, 0.3]))
        bn.running_var.copy_(torch.tensor([1.5, 0.5, 2.0]))
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    want = (x - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + 1e-3) \
        + bn.bias[:, None, None]
    torch.testing.assert_close(bn(x), want)


def test_inception_avg_pool_excludes_padding_like_tf(loaded):
    # Mixed_5b's Branch_3 sees a 3x3 SAME average pool; TF averages only real pixels.
    model, _ = loaded
    block = model.predictor.Mixed_5b
    x = torch.rand(1, 192, 6, 6)
    pooled = {}

    def grab(module, inputs, output):
        pooled["in"] = inputs[0]

    handle = block.branch_pool.register_forward_hook(grab)
    try:
        with torch.no_grad():
            block(x)
    finally:
        handle.remove()
    p = pooled["in"]
    assert torch.allclose(p[0, :, 0, 0], x[0, :, :2, :2].mean(dim=(1, 2)))   # corner: 4 pixels
    assert torch.allclose(p[0, :, 0, 3], x[0, :, :2, 2:5].mean(dim=(1, 2)))  # edge: 6 pixels
    assert torch.allclose(p[0, :, 2, 2], x[0, :, 1:4, 1:4].mean(dim=(1, 2)))


def test_stride2_reflect_conv_sizes():
    conv = Transformer().contract["conv2"]
    for n in (64, 65, 127, 128, 257):
        assert conv(torch.rand(1, 32, n, n + 1)).shape[-2:] == (math.ceil(n / 2), math.ceil((n + 1) / 2))


# ----------------------------------------------------------------- end to end
@pytest.mark.parametrize("hw", [(256, 256), (512, 512), (300, 257)])
def test_output_shape_and_range(loaded, hw):
    model, _ = loaded
    torch.manual_seed(4)
    content, style = torch.rand(1, 3, *hw), torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        out = model(content, style)
    assert out.shape == content.shape
    assert out.min() >= 0 and out.max() <= 1 and torch.isfinite(out).all()


def test_crop_keeps_magentas_top_left_pixels(loaded):
    # For 257 x 259 the network produces 260 x 260; the crop is that map's top-left corner.
    model, _ = loaded
    content = torch.rand(1, 3, 257, 259)
    with torch.no_grad():
        emb = model.embedding(torch.rand(1, 3, 96, 96))
        out = model.stylize_embedding(content, emb)
        params = model.predictor.style_params(emb)
        t = model.transformer
        x = content
        for layer in t.contract.values():
            x = layer(x)
        for block in t.residual.values():
            x = block(x, params)
        for layer in t.expand.values():
            x = layer(x, params)
    assert x.shape[-2:] == (260, 260)
    assert torch.equal(out, x[..., :257, :259])


def test_identity_interpolation(loaded):
    model, _ = loaded
    torch.manual_seed(5)
    content, style = torch.rand(2, 3, 96, 96), torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        b_c, b_s = model.embedding(content), model.embedding(style)
        torch.testing.assert_close(model(content, style, alpha=0.0), model.stylize_embedding(content, b_c))
        torch.testing.assert_close(model(content, style, alpha=1.0), model.stylize_embedding(content, b_s))
        torch.testing.assert_close(model(content, style, alpha=0.3),
                                   model.stylize_embedding(content, 0.3 * b_s + 0.7 * b_c))
        torch.testing.assert_close(model.interpolate(content, [style, content], [0.25, 0.75]),
                                   model.stylize_embedding(content, 0.25 * b_s + 0.75 * b_c))


@settings(max_examples=8, deadline=None)
@given(st.integers(5, 70), st.integers(5, 70))
def test_transformer_any_size(h, w):
    t = Transformer().eval()
    params = {s: (torch.zeros(1, d), torch.ones(1, d)) for s, d in STYLE_SITES}
    with torch.no_grad():
        assert t(torch.rand(1, 3, h, w), params).shape == (1, 3, h, w)


def test_parameter_counts(model):
    names = magenta_variable_names()

    def expected(pred):
        return sum(_numel(s) for n, s in names.items() if pred(n) and "/moving_" not in n)

    n_t = sum(p.numel() for p in model.transformer.parameters())
    n_p = sum(p.numel() for p in model.predictor.parameters())
    print(f"\ntransformer parameters: {n_t:,}\npredictor parameters:   {n_p:,}\ntotal: {n_t + n_p:,}")
    assert n_t == expected(lambda n: n.startswith("transformer/")) == 1_674_656
    assert n_p == expected(lambda n: not n.startswith("transformer/")) == 9_311_906
    # hand count of the transformer: convs + contract BN betas
    convs = 9 * 9 * 3 * 32 + 9 * 64 * 32 + 9 * 128 * 64 + 10 * 9 * 128 * 128 \
        + 9 * 64 * 128 + 9 * 32 * 64 + 81 * 3 * 32
    assert n_t == convs + 32 + 64 + 128
    # heads: 2 x (100 x 1379 + 1379); bottleneck 768 x 100 + 100
    heads = sum(p.numel() for p in model.predictor.heads.parameters())
    assert heads == 2 * (100 * 1379 + 1379)
    assert sum(p.numel() for p in model.predictor.bottleneck.parameters()) == 76_900


# ----------------------------------------------------------------- inference resize (fix 6)
def test_tf_resize_bilinear_gives_tensorflows_values():
    # tf.compat.v1.image.resize_bilinear(x, [5, 3], align_corners=False), TensorFlow 2.21, x = arange(12)² as 3 x 4
    want = [[0.0, 2.0, 7.333333969116211], [9.600000381469727, 18.000001907348633, 29.733335494995117],
            [25.60000228881836, 40.40000534057617, 58.5333366394043],
            [54.400001525878906, 75.60000610351562, 100.13333129882812], [64.0, 87.33333587646484, 114.0]]
    got = tf_resize_bilinear((torch.arange(12.0) ** 2).view(1, 1, 3, 4), (5, 3))[0, 0]
    torch.testing.assert_close(got, torch.tensor(want), atol=1e-5, rtol=1e-6)
    x = torch.rand(1, 3, 8, 10)
    assert torch.equal(tf_resize_bilinear(x, (4, 5)), x[..., ::2, ::2])      # legacy: no half-pixel centres
    assert torch.equal(tf_resize_bilinear(x, (8, 10)), x)


def test_smallest_side_size_is_tfs_float32_arithmetic():
    # values of TF's _smallest_size_at_least (float32 scale, truncation), computed with TensorFlow 2.21
    assert _smallest_side_size(512, 640, 256) == (256, 320)
    assert _smallest_side_size(300, 257, 256) == (298, 256)
    assert _smallest_side_size(41, 256, 256) == (255, 1598)
    assert _smallest_side_size(80, 100, 256) == (256, 320)                   # small styles grow


def test_style_square_crop_is_the_central_square():
    style = torch.rand(1, 3, 300, 420)
    assert magenta_style_image(style).shape == (1, 3, 256, 358)
    assert torch.equal(magenta_style_image(style, square_crop=True), tf_resize_bilinear(style[..., :, 60:360], (256, 256)))


def test_eval_mode_resizes_the_style_and_the_content_for_alpha_training_does_not(model):
    torch.manual_seed(6)
    content, style = torch.rand(1, 3, 64, 72), torch.rand(1, 3, 512, 600)
    small = magenta_style_image(style)
    assert small.shape[-2:] == (256, 300)
    with torch.no_grad():
        assert torch.equal(model(content, style), model(content, small))
        torch.testing.assert_close(model(content, style, alpha=0.5), model.stylize_embedding(
            content, 0.5 * model.predictor.embedding(small) + 0.5 * model.predictor.embedding(magenta_style_image(content))))
        training = Magenta().train()
        training.load_state_dict(model.state_dict())
        seen = []
        training.predictor.Conv2d_1a_3x3.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[-2:])))
        training.encode_style(style)
    assert seen == [(512, 600)]


# ----------------------------------------------------------------- ImageNet start (fix 4)
def _torchvision_inception(gamma_one: bool):
    from torchvision.models import inception_v3
    tv = inception_v3(weights=None, aux_logits=True, init_weights=False)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                if not gamma_one: m.weight.uniform_(-1.5, 1.5, generator=gen)
                m.bias.normal_(0, 1, generator=gen)
                m.running_mean.normal_(0, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2, generator=gen)
    return tv.eval()


def test_imagenet_file_maps_onto_the_predictor_tensor_for_tensor(tmp_path):
    tv = _torchvision_inception(gamma_one=True)
    torch.save(tv.state_dict(), tmp_path / "inc.pth")
    model = Magenta()
    rest = {k: v.clone() for k, v in model.predictor.state_dict().items() if k.startswith(("bottleneck", "heads"))}
    assert load_imagenet_predictor(model, tmp_path / "inc.pth") == f"ImageNet Inception-v3 from {tmp_path / 'inc.pth'}"
    source, state = tv.state_dict(), model.predictor.state_dict()
    trunk = [k for k in state if k not in rest]
    assert len(trunk) == 70 * 5
    for k in trunk:
        if not k.endswith("num_batches_tracked"): assert torch.equal(state[k], source[k]), k
    assert all(torch.equal(state[k], v) for k, v in rest.items())     # bottleneck and heads keep their initialisers


def test_imagenet_gamma_is_folded_exactly_for_inference(tmp_path):
    from torchvision.models import inception as tv_inception
    import types
    from unittest import mock
    tv = _torchvision_inception(gamma_one=False)
    torch.save(tv.state_dict(), tmp_path / "inc.pth")
    model = Magenta()
    assert load_imagenet_predictor(model, tmp_path / "inc.pth").endswith("(γ ≠ 1 folded in 70 of 70 layers)")
    slim = types.SimpleNamespace(**{**vars(F), "relu": lambda x, inplace=False: F.relu6(x),
                                    "avg_pool2d": lambda x, kernel_size, stride, padding: F.avg_pool2d(
                                        x, kernel_size, stride, padding, count_include_pad=False)})
    x = torch.rand(1, 3, 96, 96, dtype=torch.float64)
    with torch.no_grad():
        ours = model.predictor.double().eval().features(x)
        ref = x
        with mock.patch.object(tv_inception, "F", slim):
            for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                         "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
                ref = getattr(tv.double(), name)(ref)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_no_imagenet_file_warns_and_changes_nothing(tmp_path, caplog):
    model = Magenta()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level("WARNING", logger="balstyle"):
        assert load_imagenet_predictor(model, tmp_path / "absent.pth") == ""
    assert "starts from random weights" in caplog.text and str(tmp_path / "absent.pth") in caplog.text
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert imagenet_inception_file().name.startswith("inception_v3_google-")


def test_not_an_inception_file_is_refused(tmp_path):
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="missing .*Conv2d_1a_3x3.conv.weight"):
        load_imagenet_predictor(Magenta(), tmp_path / "other.pth")
    state = _torchvision_inception(gamma_one=True).state_dict()
    state["Mixed_6e.branch_pool.conv.weight"] = torch.zeros(192, 768, 3, 3)
    torch.save(state, tmp_path / "bent.pth")
    model = Magenta()
    before = model.predictor.Conv2d_1a_3x3.conv.weight.clone()
    with pytest.raises(ValueError, match=r"mis-shaped \(1\): Mixed_6e.branch_pool: kernel \[192, 768, 3, 3\]"):
        load_imagenet_predictor(model, tmp_path / "bent.pth")
    assert torch.equal(model.predictor.Conv2d_1a_3x3.conv.weight, before)     # nothing loaded


def test_the_method_starts_from_imagenet():
    assert MAGENTA.pretrained_init is load_imagenet_predictor

