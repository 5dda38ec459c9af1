#!/bin/bash
# per-frame time before (52fc0e9) and after (main HEAD) the refactor: (t(6) - t(2)) / 4 of style_transfer.py --video,
# model loading included in both (it cancels), interleaved A B A B per round, fill-rule weights of the released sizes.
set -u
# usage: benchmarks/frame_path_ab.sh dualstylegan|toonify. Needs: OLD / NEW = git worktrees of the two trees
# (default /work/wt-before, /work/main-snap), CK = python benchmarks/make_fill_checkpoints.py --out /tmp/fill_ckpt,
# and /tmp/bench/clip2.mp4, clip6.mp4 = the first 2 and 6 frames of a video (e.g. ../shared/samples/529.mp4).
CK=${CK:-/tmp/fill_ckpt}
OLD=${OLD:-/work/wt-before}
NEW=${NEW:-/work/main-snap}
out=/tmp/bench/ab_$1.tsv
backbone=$1
if [ "$backbone" = dualstylegan ]; then ck=$CK/vtoonify_d_fill/vtoonify_s_d.pt; else ck=$CK/vtoonify_t_fill/vtoonify.pt; fi
echo -e "round\ttree\tframes\tseconds\tpeak_rss_kb" > $out
for round in 1 2; do
  for tree in before after; do
    dir=$OLD; [ $tree = after ] && dir=$NEW
    for n in 2 6; do
      rm -rf /tmp/bench/out_$tree
      s=$(date +%s.%N)
      ( cd $dir && PYTHONPATH=$dir OMP_NUM_THREADS=2 /usr/bin/time -f %M -o /tmp/bench/rss python style_transfer.py --content /tmp/bench/clip$n.mp4 --video --scale_image --cpu --no_progress --no_download --backbone $backbone --ckpt $ck --style_encoder_path $CK/encoder.pt --faceparsing_path $CK/faceparsing.pth --style_id 0 --output_path /tmp/bench/out_$tree > /tmp/bench/log_$tree 2>&1 )
      e=$(date +%s.%N)
      echo -e "$round\t$tree\t$n\t$(echo "$e - $s" | bc)\t$(cat /tmp/bench/rss)" >> $out
    done
  done
done
cat $out
