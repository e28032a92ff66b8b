"""Small PyTorch definitions following the published layouts, for parity tests.

Module and parameter names are those of torchvision (`r2plus1d_18`, `r3d_18`,
`resnet18`), the BioVid `Conv1D_model`, pytorch-i3d + the TCN of the authors' `I3D_WSDDA`,
the authors' fusion modules (`Two_transformers` with `mm_transformer`, `vregressor`,
`aregressor`; BioVid `Multi_cross_attention`) and Praveen et al.'s `CAM`. Written for these
tests; where the public code has a bug (BUILD_NOTES.md), these follow the paper.
Only imported when torch is installed.
"""

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------- torchvision video ResNets


class Conv3DSimple(nn.Conv3d):

  def __init__(self, cin, cout, midplanes=None, stride=1):
    del midplanes
    super().__init__(cin, cout, (3, 3, 3), stride=stride, padding=1, bias=False)


class Conv2Plus1D(nn.Sequential):

  def __init__(self, cin, cout, midplanes, stride=1):
    super().__init__(
        nn.Conv3d(cin, midplanes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                  bias=False),
        nn.BatchNorm3d(midplanes), nn.ReLU(inplace=True),
        nn.Conv3d(midplanes, cout, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0),
                  bias=False))


class VideoBlock(nn.Module):

  def __init__(self, cin, cout, builder, stride):
    super().__init__()
    midplanes = (cin * cout * 27) // (cin * 9 + 3 * cout)
    self.conv1 = nn.Sequential(builder(cin, cout, midplanes, stride), nn.BatchNorm3d(cout),
                               nn.ReLU(inplace=True))
    self.conv2 = nn.Sequential(builder(cout, cout, midplanes), nn.BatchNorm3d(cout))
    self.downsample = None
    if stride != 1 or cin != cout:
      self.downsample = nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False),
                                      nn.BatchNorm3d(cout))

  def forward(self, x):
    res = x if self.downsample is None else self.downsample(x)
    return F.relu(self.conv2(self.conv1(x)) + res)


class Block2D(nn.Module):

  def __init__(self, cin, cout, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.downsample = None
    if stride != 1 or cin != cout:
      self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

  def forward(self, x):
    res = x if self.downsample is None else self.downsample(x)
    return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + res)


class ResNet(nn.Module):
  """kind 'r2plus1d' / 'r3d' (torchvision VideoResNet) or 'resnet2d' (torchvision ResNet
  with an `in_channels` stem); layer-4 map reduced as jmt_jax does ('flatten': kept whole,
  channel-major); `fc_out`: torchvision's `fc` after the reduction (the classifier, or
  BioVid Visual_model2's 512x512 projection), none by default."""

  def __init__(self, kind, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2), stem_mid=45,
               in_channels=3, reduction="mean", fc_out=0):
    super().__init__()
    self.kind, self.reduction = kind, reduction
    w0 = widths[0]
    if kind == "resnet2d":
      self.conv1 = nn.Conv2d(in_channels, w0, 7, 2, 3, bias=False)
      self.bn1 = nn.BatchNorm2d(w0)
      self.maxpool = nn.MaxPool2d(3, 2, 1)
    elif kind == "r3d":
      self.stem = nn.Sequential(nn.Conv3d(3, w0, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
                                nn.BatchNorm3d(w0), nn.ReLU(inplace=True))
    else:
      self.stem = nn.Sequential(
          nn.Conv3d(3, stem_mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
          nn.BatchNorm3d(stem_mid), nn.ReLU(inplace=True),
          nn.Conv3d(stem_mid, w0, (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False),
          nn.BatchNorm3d(w0), nn.ReLU(inplace=True))
    cin = w0
    for i, (w, n) in enumerate(zip(widths, blocks)):
      layer = []
      for j in range(n):
        stride = 2 if i > 0 and j == 0 else 1
        if kind == "resnet2d":
          layer.append(Block2D(cin, w, stride))
        else:
          builder = Conv3DSimple if kind == "r3d" else Conv2Plus1D
          layer.append(VideoBlock(cin, w, builder, stride))
        cin = w
      setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
    self.fc = nn.Linear(widths[-1], fc_out) if fc_out else nn.Identity()

  def forward(self, x):
    if self.kind == "resnet2d":
      x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
    else:
      x = self.stem(x)
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    if self.reduction == "flatten":
      return x.flatten(1)
    x = x.flatten(2)
    return self.fc(x.max(dim=2)[0] if self.reduction == "max" else x.mean(dim=2))


class R2D1Flatten(nn.Module):
  """TwoStreamAuralVisualModel's vision branch with R2D1_ft_dim_reduce='FLATTEN': the
  layer-4 map of `vision_r2d1.r2plus1d`, flattened, through `vision_r2d1_fc`, a module
  of its own beside the backbone (saved apart as vision_r2d1_fc.pt)."""

  def __init__(self, flatten_in=25088, embed_dim=512, **resnet):
    super().__init__()
    self.vision_r2d1 = nn.Module()
    self.vision_r2d1.r2plus1d = ResNet("r2plus1d", reduction="flatten", **resnet)
    self.vision_r2d1_fc = nn.Linear(flatten_in, embed_dim)

  def forward(self, x):
    return self.vision_r2d1_fc(self.vision_r2d1.r2plus1d(x))


class VisualModel2(nn.Module):
  """BioVid's Visual_model2: R3D-18 whose `fc` is a Linear(512, 512), then `out_layers`,
  the unimodal classifier. Its features, as VIS_PHY_MODEL_CONCAT takes them
  (out_layers emptied), are `features(x)`: through the fc."""

  def __init__(self, num_classes=2, **resnet):
    super().__init__()
    width = resnet.get("widths", (512,))[-1]
    self.visual_model = ResNet("r3d", fc_out=width, **resnet)
    self.out_layers = nn.Sequential(nn.Linear(width, 256), nn.ReLU(), nn.Linear(256, 64),
                                    nn.ReLU(), nn.Linear(64, num_classes))

  def features(self, x):
    return self.visual_model(x)


# ---------------------------------------------------------------- BioVid EDA CNN


class Conv1DModel(nn.Module):
  """BioVid Conv1D_model with fc2 (the classifier) removed."""

  def __init__(self, widths=(32, 64), flatten_in=64 * 349, embed_dim=512):
    super().__init__()
    self.conv1 = nn.Conv1d(1, widths[0], 5, stride=2)
    self.conv2 = nn.Conv1d(widths[0], widths[1], 5)
    self.fc1 = nn.Linear(flatten_in, embed_dim)

  def forward(self, x):
    x = F.max_pool1d(F.relu(self.conv1(x)), 2)
    x = F.max_pool1d(F.relu(self.conv2(x)), 2)
    return self.fc1(x.flatten(1))


# ---------------------------------------------------------------- I3D + TCN


def _same_pad(size, k, s):
  total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
  return total // 2, total - total // 2


def _pad_same(x, kernel, stride):
  pads = [_same_pad(x.shape[2 + i], kernel[i], stride[i]) for i in range(3)]
  return F.pad(x, pads[2] + pads[1] + pads[0])


class Unit3D(nn.Module):

  def __init__(self, cin, cout, kernel=(1, 1, 1), stride=(1, 1, 1)):
    super().__init__()
    self.kernel, self.stride = kernel, stride
    self.conv3d = nn.Conv3d(cin, cout, kernel, stride, bias=False)
    self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01)

  def forward(self, x):
    return F.relu(self.bn(self.conv3d(_pad_same(x, self.kernel, self.stride))))


def _max_pool_same(x, kernel, stride):
  return F.max_pool3d(_pad_same(x, kernel, stride), kernel, stride)


class Inception(nn.Module):

  def __init__(self, cin, w):
    super().__init__()
    self.b0 = Unit3D(cin, w[0])
    self.b1a, self.b1b = Unit3D(cin, w[1]), Unit3D(w[1], w[2], (3, 3, 3))
    self.b2a, self.b2b = Unit3D(cin, w[3]), Unit3D(w[3], w[4], (3, 3, 3))
    self.b3b = Unit3D(cin, w[5])

  def forward(self, x):
    return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                      self.b3b(_max_pool_same(x, (3, 3, 3), (1, 1, 1)))], 1)


_MIXED = (("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
          ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
          ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
          ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
          ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
          ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
          ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
          ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
          ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)))


class InceptionI3dTrunk(nn.Module):
  """pytorch-i3d's InceptionI3d end points with the authors' temporal strides of 1."""

  def __init__(self):
    super().__init__()
    self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (1, 2, 2))
    self.Conv3d_2b_1x1 = Unit3D(64, 64)
    self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
    for name, cin, w in _MIXED:
      setattr(self, name, Inception(cin, w))

  def forward(self, x):
    x = _max_pool_same(self.Conv3d_1a_7x7(x), (1, 3, 3), (1, 2, 2))
    x = _max_pool_same(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)), (1, 3, 3), (1, 2, 2))
    pools = {"Mixed_4b": ((3, 3, 3), (1, 2, 2)), "Mixed_5b": ((2, 2, 2), (1, 2, 2))}
    for name, _, _ in _MIXED:
      if name in pools:
        x = _max_pool_same(x, *pools[name])
      x = getattr(self, name)(x)
    # AvgPool3d((2, 7, 7), stride 1) at 224x224; (2, H, W) in general.
    return F.avg_pool3d(x, (2,) + tuple(x.shape[3:]), stride=1)


class Chomp(nn.Module):

  def __init__(self, n):
    super().__init__()
    self.n = n

  def forward(self, x):
    return x[:, :, :-self.n]


class TemporalBlock(nn.Module):

  def __init__(self, cin, cout, k, dilation, dropout):
    super().__init__()
    pad = (k - 1) * dilation
    wn = nn.utils.weight_norm
    self.conv1 = wn(nn.Conv1d(cin, cout, k, padding=pad, dilation=dilation))
    self.conv2 = wn(nn.Conv1d(cout, cout, k, padding=pad, dilation=dilation))
    self.net = nn.Sequential(self.conv1, Chomp(pad), nn.LeakyReLU(), nn.Dropout(dropout),
                             self.conv2, Chomp(pad), nn.LeakyReLU(), nn.Dropout(dropout))
    self.downsample = nn.Conv1d(cin, cout, 1) if cin != cout else None

  def forward(self, x):
    res = x if self.downsample is None else self.downsample(x)
    return F.leaky_relu(self.net(x) + res)


class TemporalConvNet(nn.Module):

  def __init__(self, cin, widths, k, dropout):
    super().__init__()
    blocks = []
    for i, w in enumerate(widths):
      blocks.append(TemporalBlock(cin if i == 0 else widths[i - 1], w, k, 2 ** i, dropout))
    self.network = nn.Sequential(*blocks)

  def forward(self, x):
    return self.network(x)


class I3DTCN(nn.Module):
  """I3D_WSDDA's feature path, then max over time as the authors' TwoStreamAuralVisualModel."""

  def __init__(self, tcn_widths=(512,) * 4, k=5, dropout=0.1):
    super().__init__()
    self.i3d_WSDDA = InceptionI3dTrunk()
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # weight_norm is deprecated; its state dict names matter
      self.temporal = TemporalConvNet(1024, tcn_widths, k, dropout)

  def forward(self, x):
    f = self.i3d_WSDDA(x).squeeze(4).squeeze(3)  # (N, 1024, T - 1)
    return self.temporal(f).transpose(1, 2).max(dim=1)[0]


# ---------------------------------------------------------------- fusion (the authors' modules)


class EncoderLayer(nn.Module):

  def __init__(self, dim, heads, hidden):
    super().__init__()
    self.attention = nn.MultiheadAttention(dim, heads)
    self.feed_forward = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
    self.layer_norm1 = nn.LayerNorm(dim)
    self.layer_norm2 = nn.LayerNorm(dim)

  def forward(self, x):  # (seq, batch, dim)
    x = self.layer_norm1(x + self.attention(x, x, x)[0])
    return self.layer_norm2(x + self.feed_forward(x))


class EncoderBlock(nn.Module):

  def __init__(self, dim, heads, hidden, layers):
    super().__init__()
    self.layers = nn.Sequential(*[EncoderLayer(dim, heads, hidden) for _ in range(layers)])

  def forward(self, x):
    return self.layers(x)


def _seq_first(x):
  return x.permute(1, 0, 2)


class FcLayer(nn.Module):
  """The authors' FcLayer: one Linear, held as `fc_layer`."""

  def __init__(self, cin, cout):
    super().__init__()
    self.fc_layer = nn.Linear(cin, cout)

  def forward(self, x):
    return self.fc_layer(x)


class IntraModalTransformerFusion(nn.Module):
  """Intra_modal_transformer_fusion: a 768-d input through the shared `fc`, the two
  features as two tokens per clip (sequence-first), an encoder block, a self-attention,
  the second token kept; batch-first (B, T, d) in and out."""

  def __init__(self, d, heads, hidden, layers, fc_in=768):
    super().__init__()
    self.final_visual_encoder = EncoderBlock(d, heads, hidden, layers)
    self.final_self_attention = nn.MultiheadAttention(d, heads)
    self.fc = nn.Linear(fc_in, d)

  def forward(self, a, b):
    a = self.fc(a) if a.shape[-1] == self.fc.in_features else a
    b = self.fc(b) if b.shape[-1] == self.fc.in_features else b
    batch, seq = a.shape[:2]
    tokens = torch.stack((a, b), dim=2).flatten(0, 1).permute(1, 0, 2)  # (2, B*T, d)
    tokens = self.final_visual_encoder(tokens)
    tokens = self.final_self_attention(tokens, tokens, tokens)[0]
    return tokens.permute(1, 0, 2).unflatten(0, (batch, seq))[:, :, -1]


class JMT(nn.Module):
  """MultimodalTransformer_w_JR (output 'SELF_ATTEN' = tokens, 'FC' = fc) and the BioVid
  Multi_cross_attention (output 'concat'), batch-first in and out."""

  def __init__(self, d, heads, layers, output, hidden=512, concat_hidden=512, normalize=True):
    super().__init__()
    self.output, self.normalize = output, normalize
    self.visual_encoder = EncoderBlock(d, heads, hidden, layers)
    self.physiological_encoder = EncoderBlock(d, heads, hidden, layers)
    self.joint_representation_encoder = EncoderBlock(d, heads, hidden, layers)
    self.final_encoder = EncoderBlock(6 * d, heads, concat_hidden, layers)
    self.cross_attention_v = nn.MultiheadAttention(d, heads)
    self.cross_attention_p = nn.MultiheadAttention(d, heads)
    self.cross_attention_pv = nn.MultiheadAttention(d, heads)
    self.out_layer_pv = nn.Linear(2 * d, d)
    if output == "tokens":
      self.final_visual_encoder = EncoderBlock(d, heads, hidden, layers)
      self.final_self_attention = nn.MultiheadAttention(d, heads)
    if output == "fc":
      self.out_layer1 = nn.Linear(6 * d, 2 * d)

  def forward(self, v, a):
    if self.normalize:  # the Aff-Wild2 code; the BioVid main.py feeds raw features
      v, a = F.normalize(v, dim=-1), F.normalize(a, dim=-1)
    j = self.out_layer_pv(torch.cat([v, a], dim=2))
    v = self.visual_encoder(_seq_first(v))
    a = self.physiological_encoder(_seq_first(a))
    j = self.joint_representation_encoder(_seq_first(j))
    ca = lambda m, q, kv: m(q, kv, kv)[0]
    outs = [ca(self.cross_attention_v, v, a), ca(self.cross_attention_p, a, v),
            ca(self.cross_attention_pv, j, v), ca(self.cross_attention_v, v, j),
            ca(self.cross_attention_pv, j, a), ca(self.cross_attention_p, a, j)]  # (T, B, d)
    if self.output == "tokens":
      t, b, d = outs[0].shape
      tokens = torch.stack(outs, dim=2).permute(1, 0, 2, 3).flatten(0, 1).permute(1, 0, 2)
      tokens = self.final_visual_encoder(tokens)
      tokens = self.final_self_attention(tokens, tokens, tokens)[0]  # (6, B*T, d)
      return tokens[-1].reshape(b, t, d)
    x = torch.cat(outs, dim=2)
    if self.output == "concat":
      return _seq_first(self.final_encoder(x))
    return _seq_first(self.out_layer1(x))


class Vanilla(nn.Module):
  """MultimodalTransformer_wo_JR."""

  def __init__(self, d, heads, layers, hidden=512):
    super().__init__()
    self.visual_encoder = EncoderBlock(d, heads, hidden, layers)
    self.physiological_encoder = EncoderBlock(d, heads, hidden, layers)
    self.cross_attention_v = nn.MultiheadAttention(d, heads)
    self.cross_attention_p = nn.MultiheadAttention(d, heads)
    self.gated_attention = nn.Linear(2 * d, 1)  # built, never used, by the public code
    self.final_layer = nn.Linear(2 * d, d)

  def forward(self, v, a):
    v = self.visual_encoder(_seq_first(F.normalize(v, dim=-1)))
    a = self.physiological_encoder(_seq_first(F.normalize(a, dim=-1)))
    x = torch.cat([self.cross_attention_v(v, a, a)[0], self.cross_attention_p(a, v, v)[0]], 2)
    return self.final_layer(_seq_first(x))


class FeatureConcatFC(nn.Module):

  def __init__(self, d):
    super().__init__()
    self.fc = nn.Linear(2 * d, d)

  def forward(self, v, a):
    return self.fc(torch.cat([F.normalize(v, dim=-1), F.normalize(a, dim=-1)], 2))


class CAM(nn.Module):
  """Praveen et al.'s joint cross-attention, computed per sample as their code does;
  returns [X_att_v; X_att_a] per clip."""

  def __init__(self, d, seq, k=128, hidden=32):
    super().__init__()
    self.encoder1, self.encoder2 = nn.Linear(d, k), nn.Linear(d, k)
    self.affine_a = nn.Linear(seq, seq, bias=False)
    self.affine_v = nn.Linear(seq, seq, bias=False)
    self.W_a, self.W_v = nn.Linear(seq, hidden, bias=False), nn.Linear(seq, hidden, bias=False)
    self.W_ca = nn.Linear(2 * k, hidden, bias=False)
    self.W_cv = nn.Linear(2 * k, hidden, bias=False)
    self.W_ha, self.W_hv = nn.Linear(hidden, seq, bias=False), nn.Linear(hidden, seq, bias=False)

  def forward(self, v, a):
    v, a = F.normalize(v, dim=-1), F.normalize(a, dim=-1)
    outs = []
    for i in range(v.shape[0]):
      xa, xv = self.encoder1(a[i]), self.encoder2(v[i])  # (T, k)
      j = torch.cat([xa, xv], 1)
      scale = math.sqrt(j.shape[1])
      ca = torch.tanh(xa.t() @ self.affine_a(j.t()).t() / scale)
      cv = torch.tanh(xv.t() @ self.affine_v(j.t()).t() / scale)
      ha = F.relu(self.W_ca(ca) + self.W_a(xa.t()))
      hv = F.relu(self.W_cv(cv) + self.W_v(xv.t()))
      outs.append(torch.cat([self.W_hv(hv).t() + xv, self.W_ha(ha).t() + xa], 1))
    return torch.stack(outs)


class AffWild2Fusion(nn.Module):
  """Two_transformers: `mm_transformer` then the valence and arousal regressors."""

  def __init__(self, mm_transformer, dim, hidden=128):
    super().__init__()
    self.mm_transformer = mm_transformer
    self.vregressor = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.1),
                                    nn.Linear(hidden, 1))
    self.aregressor = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.1),
                                    nn.Linear(hidden, 1))

  def forward(self, v, a):
    x = self.mm_transformer(v, a)
    return self.vregressor(x).squeeze(2), self.aregressor(x).squeeze(2)


class BioVidJMT(JMT):
  """Multi_cross_attention: JMT with the concat output, MLP out_layer1..5, last clip, on
  the raw backbone features `main.py` gives it (VIS_PHY_MODEL.model_out_feats)."""

  def __init__(self, d, heads, layers, mlp, num_classes, concat_hidden=512):
    super().__init__(d, heads, layers, "concat", hidden=d, concat_hidden=concat_hidden,
                     normalize=False)
    widths = (6 * d,) + tuple(mlp) + (num_classes,)
    for i in range(len(widths) - 1):
      setattr(self, f"out_layer{i + 1}", nn.Linear(widths[i], widths[i + 1]))
    self.num_linear = len(widths) - 1

  def forward(self, v, a):
    x = super().forward(v, a)[:, -1]
    for i in range(self.num_linear):
      x = getattr(self, f"out_layer{i + 1}")(x)
      if i < self.num_linear - 1:
        x = F.relu(x)
    return x


def randomize_batch_norm(module, generator):
  """Non-trivial running statistics, so that eval-mode BatchNorm is tested too."""
  for m in module.modules():
    if isinstance(m, nn.modules.batchnorm._BatchNorm):  # pylint: disable=protected-access
      with torch.no_grad():
        m.running_mean.uniform_(-0.2, 0.2, generator=generator)
        m.running_var.uniform_(0.5, 1.5, generator=generator)
        m.weight.uniform_(0.5, 1.5, generator=generator)
        m.bias.uniform_(-0.2, 0.2, generator=generator)
  return module
