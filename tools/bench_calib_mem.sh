#!/bin/bash
# Peak memory and time of calibration on the real models (.cache/realmodels,
# see tools/realmodels): Wanda, SparseGPT and static int8 quantization, two
# builds of onnxpost side by side, each row run with one then the other, and
# their outputs compared byte for byte.
#
#   tools/bench_calib_mem.sh BEFORE_BIN AFTER_BIN [OUTDIR]
#
# Prints one line per run: wall and CPU seconds (user + system), peak RSS
# (/usr/bin/time %M) and the peak RssAnon sampled every 0.1 s, the load
# average at start and end; then whether the two outputs are identical.
# Run it under nice on a shared machine. ONNXPOST_ORT_LIB must be set.
set -u
before=$1 after=$2 out=${3:-/tmp/bench_calib_mem}
mkdir -p "$out"
root=.cache/realmodels

measure() { # label bin args...
	local label=$1; shift
	local l0; l0=$(cut -d' ' -f1 /proc/loadavg)
	/usr/bin/time -f "%e %U %S %M" -o "$out/time" "$@" >"$out/log" 2>&1 &
	local tp=$! pid= maxa=0 a
	while kill -0 $tp 2>/dev/null; do
		[ -z "$pid" ] && pid=$(pgrep -P $tp | head -1)
		a=$(awk '/RssAnon/{print $2}' /proc/$pid/status 2>/dev/null)
		[ -n "$a" ] && [ "$a" -gt "$maxa" ] && maxa=$a
		sleep 0.1
	done
	wait $tp
	local rc=$? e u s m
	read -r e u s m < <(tail -1 "$out/time") # after "Command exited with non-zero status"
	printf "%-34s rc=%s wall=%6.1fs cpu=%6.1fs peakRSS=%5d MB peakAnon=%5d MB load=%s-%s\n" \
		"$label" $rc "$e" "$(echo "$u+$s" | bc)" $((m / 1024)) $((maxa / 1024)) "$l0" "$(cut -d' ' -f1 /proc/loadavg)"
	[ $rc -ne 0 ] && tail -3 "$out/log"
}

for model in ${MODELS:-magika ppocr-rec ppocr-det}; do
	for method in ${METHODS:-wanda sparsegpt int8}; do
		case $method in
		# per tensor: the PaddleOCR exports are opset 12, where per-channel
		# int8 would need a conversion to opset 13 (refused by the quantizer)
		int8) args=(quantize "$root/$model/model.onnx" --weights int8 --activations int8 --per-channel=false --calib "$root/$model/data.npz") ;;
		*) args=(sparsify "$root/$model/model.onnx" --method "$method" --sparsity 0.5 --calib "$root/$model/data.npz") ;;
		esac
		for side in before after; do
			bin=$before
			[ $side = after ] && bin=$after
			measure "$model $method $side" "$bin" "${args[@]}" -o "$out/$model-$method-$side.onnx"
		done
		if cmp -s "$out/$model-$method-before.onnx" "$out/$model-$method-after.onnx"; then
			echo "$model $method: outputs byte-identical"
		else
			echo "$model $method: OUTPUTS DIFFER"
		fi
	done
done
