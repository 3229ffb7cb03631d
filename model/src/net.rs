//! The networks: a small CPU-friendly CNN (the default) and ResNet trunks for
//! GPUs, each with two heads: glaucoma and gradability (both logits).

use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// Five stages, 24 to 192 channels: trains in minutes on two CPU cores.
    Small,
    Resnet18,
    Resnet34,
    Resnet50,
}

impl Arch {
    fn features(self) -> i64 {
        match self {
            Arch::Small => 192,
            Arch::Resnet18 | Arch::Resnet34 => 512,
            Arch::Resnet50 => 2048,
        }
    }
}

pub struct Net {
    trunk: Box<dyn ModuleT>,
    glaucoma: nn::Linear,
    gradable: nn::Linear,
}

fn conv_bn(p: &nn::Path, cin: i64, cout: i64, stride: i64) -> nn::SequentialT {
    let cfg = nn::ConvConfig { stride, padding: 1, bias: false, ..Default::default() };
    nn::seq_t()
        .add(nn::conv2d(p / "conv", cin, cout, 3, cfg))
        .add(nn::batch_norm2d(p / "bn", cout, Default::default()))
        .add_fn(|x| x.relu())
}

fn small(p: &nn::Path) -> nn::FuncT<'static> {
    let widths = [24, 48, 96, 144, 192];
    let mut seq = conv_bn(&(p / "stem"), 3, widths[0], 2);
    for (i, w) in widths.windows(2).enumerate() {
        let stage = p / format!("stage{i}");
        seq = seq
            .add(conv_bn(&(&stage / "a"), w[0], w[1], 1))
            .add(conv_bn(&(&stage / "b"), w[1], w[1], 1))
            .add_fn(|x| x.max_pool2d_default(2));
    }
    nn::func_t(move |x, train| {
        x.apply_t(&seq, train).adaptive_avg_pool2d([1, 1]).flatten(1, -1).dropout(0.2, train)
    })
}

impl Net {
    pub fn new(p: &nn::Path, arch: Arch) -> Net {
        let t = p / "trunk";
        let trunk: Box<dyn ModuleT> = match arch {
            Arch::Small => Box::new(small(&t)),
            Arch::Resnet18 => Box::new(tch::vision::resnet::resnet18_no_final_layer(&t)),
            Arch::Resnet34 => Box::new(tch::vision::resnet::resnet34_no_final_layer(&t)),
            Arch::Resnet50 => Box::new(tch::vision::resnet::resnet50_no_final_layer(&t)),
        };
        let f = arch.features();
        Net {
            trunk,
            glaucoma: nn::linear(p / "glaucoma", f, 1, Default::default()),
            gradable: nn::linear(p / "gradable", f, 1, Default::default()),
        }
    }

    /// Logits `(glaucoma, gradable)`, each of shape `[N]`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let f = self.trunk.forward_t(xs, train);
        (f.apply(&self.glaucoma).squeeze_dim(1), f.apply(&self.gradable).squeeze_dim(1))
    }
}
