//! The router and its aux losses stay fp32 under bf16 autocast (on the CPU here; the same
//! libtorch switch as on CUDA).

use tch::{nn, Device, Kind, Tensor};

use taskmoe_device::{autocast, Precision};
use taskmoe_router::{AuxLosses, Router, RouterConfig, RouterKind};

#[test]
fn routing_and_aux_losses_are_fp32_under_bf16_autocast() {
    let _rng = taskmoe_device::lock_global_rng();
    for kind in [
        RouterKind::Token,
        RouterKind::TaskConcat,
        RouterKind::PerTask,
        RouterKind::TaskLevel,
    ] {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = RouterConfig {
            kind,
            num_experts: 6,
            k: 2,
            ..RouterConfig::default()
        };
        let router = Router::new(vs.root() / "router", &cfg, 24, 3).unwrap();
        let x = Tensor::randn([40, 24], (Kind::Float, Device::Cpu));
        let tasks = Tensor::arange(40, (Kind::Int64, Device::Cpu)).remainder(3);
        let plain = router.forward(&x, &tasks, false).unwrap();
        let plain_aux = AuxLosses::compute(&plain, &tasks, 3).unwrap();
        let (cast, cast_aux) = autocast(Device::Cpu, Precision::Bf16, || {
            let out = router.forward(&x, &tasks, false).unwrap();
            let aux = AuxLosses::compute(&out, &tasks, 3).unwrap();
            (out, aux)
        });
        for t in [
            &cast.logits,
            &cast.routed.probs,
            &cast.routed.weights,
            &cast_aux.load_balance,
            &cast_aux.z_loss,
            &cast_aux.mutual_information,
        ] {
            assert_eq!(t.kind(), Kind::Float, "{kind:?}");
        }
        // Not merely fp32 results: the same fp32 computation, bit for bit.
        assert!(cast.logits.equal(&plain.logits), "{kind:?}");
        assert!(cast.routed.experts.equal(&plain.routed.experts), "{kind:?}");
        assert!(cast_aux
            .mutual_information
            .equal(&plain_aux.mutual_information));
        // bf16 activations (as a bf16 encoder would pass them) are routed in fp32 too.
        let from_bf16 = autocast(Device::Cpu, Precision::Bf16, || {
            router.forward(&x.to_kind(Kind::BFloat16), &tasks, false)
        })
        .unwrap();
        assert_eq!(from_bf16.logits.kind(), Kind::Float, "{kind:?}");
        assert_eq!(from_bf16.routed.weights.kind(), Kind::Float, "{kind:?}");
    }
}
