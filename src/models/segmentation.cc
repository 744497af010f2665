// The Keras segmentation models of divamgupta/image-segmentation-keras
// (keras_segmentation) that Checkmate (MLSys 2020) profiled at batch 32 and
// 416x608 images: fcn_8_vgg, segnet and vgg_unet, as the ATen ops a PyTorch
// port of them runs (NCHW). Layer by layer they follow the Checkmate graphs in
// ../shared/data/remat/checkmate/ ({fcn_8_vgg,segnet,vgg_unet}_32_416x608_train):
// modules carry the Keras layer names of those graphs (block1_conv1,
// conv2d_5, zero_padding2d_4, ...), whose output sizes (cost_ram) give 19
// classes. Keras differences spelled out in ATen:
// - Conv2D(activation='relu') is aten.convolution then aten.relu;
//   padding='same' is the convolution's padding (k - 1) / 2.
// - ZeroPadding2D((1, 1)) is aten.constant_pad_nd (a tensor of its own, as in
//   Keras), followed by a 'valid' convolution.
// - UpSampling2D((2, 2)) is aten.upsample_nearest2d; Cropping2D is aten.slice
//   of the last rows / columns; concatenate and Add are aten.cat / aten.add.
// - BatchNormalization is aten.native_batch_norm in training mode (PyTorch's
//   eps and momentum; the memory is the same).
// - get_segmentation_model's Reshape((H * W, classes)) + Softmax + categorical
//   cross-entropy is the per-pixel log_softmax + nll_loss of the other zoo
//   segmentation net (unet), on labels of the output's size.
// - Dropout(0.5) in fcn8 uses the zoo's dropout option (the masks cost the
//   same memory at any p).
// Layers the Keras graphs compute but never use (segnet's fifth encoder block,
// vgg_unet's block5) are left out, as Checkmate's graphs leave them out.
#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <string>
#include <vector>

#include "models/families.h"
#include "models/layers.h"

namespace memfit::models {
namespace {

constexpr int64_t kChannels = 3;
constexpr int64_t kClasses = 19;

// Keras Conv2D with bias: padding = (kernel - 1) / 2 for 'same', 0 for 'valid'.
TensorId KerasConv(GraphBuilder& b, std::string_view name, TensorId x, int64_t out_channels, int64_t kernel,
                   bool same, bool relu) {
  x = Conv2d(b, name, x, out_channels, kernel, {.padding = same ? (kernel - 1) / 2 : 0, .bias = true});
  return relu ? Relu(b, x) : x;
}

// ZeroPadding2D((1, 1)): one zero row / column on every side of H and W.
TensorId ZeroPad(GraphBuilder& b, const std::string& name, TensorId x) {
  return b.Call("aten.constant_pad_nd", {x}, {{"pad", std::vector<int64_t>{1, 1, 1, 1}}, {"value", 0.0}}, name);
}

// UpSampling2D((2, 2)), nearest neighbour.
TensorId UpSample(GraphBuilder& b, const std::string& name, TensorId x) {
  const Shape& s = b.shape(x);
  return b.Call("aten.upsample_nearest2d", {x},
                {{"output_size", std::vector<int64_t>{2 * s[2], 2 * s[3]}}, {"scales_h", 2.0}, {"scales_w", 2.0}},
                name);
}

TensorId Pool(GraphBuilder& b, const std::string& name, TensorId x) {
  ModuleScope scope(b, name);
  return MaxPool2d(b, x, 2, 2, 0);
}

// keras_segmentation's get_vgg_encoder, blocks 1..`blocks` (3x3 'same'
// convolutions with ReLU, 2x2 max pooling after each block); returns the
// pooled output of every block (its `levels` f1..f5).
std::vector<TensorId> VggEncoder(GraphBuilder& b, TensorId x, int64_t blocks) {
  constexpr int64_t kWidths[] = {64, 128, 256, 512, 512};
  constexpr int64_t kConvs[] = {2, 2, 3, 3, 3};
  std::vector<TensorId> levels;
  for (int64_t block = 1; block <= blocks; ++block) {
    for (int64_t conv = 1; conv <= kConvs[block - 1]; ++conv) {
      x = KerasConv(b, fmt::format("block{}_conv{}", block, conv), x, kWidths[block - 1], 3, true, true);
    }
    x = Pool(b, fmt::format("block{}_pool", block), x);
    levels.push_back(x);
  }
  return levels;
}

// The Keras crop(o1, o2, img_input) of fcn.py: crops the wider of the two to
// the other's width (Cropping2D((0, 0), (0, cx))), then the taller to the
// other's height (Cropping2D((0, cy), (0, 0))), cutting the last columns/rows.
void Crop(GraphBuilder& b, TensorId& o1, TensorId& o2, int64_t& index) {
  for (int64_t dim : {3, 2}) {
    TensorId& larger = b.shape(o1)[dim] > b.shape(o2)[dim] ? o1 : o2;
    const int64_t keep = std::min(b.shape(o1)[dim], b.shape(o2)[dim]);
    if (b.shape(larger)[dim] == keep) continue;
    const Attrs attrs = {{"dim", dim}, {"start", int64_t{0}}, {"end", keep}, {"step", int64_t{1}}};
    larger = b.Call("aten.slice.Tensor", {larger}, attrs, index ? fmt::format("cropping2d_{}", index) : "cropping2d");
    ++index;
  }
}

Graph Finish(GraphBuilder& b, TensorId logits, const ZooRequest& r) {
  const Shape& s = b.shape(logits);
  TensorId labels = b.Input("masks", {r.batch, s[2], s[3]}, DType::kI64);
  return FinishZooGraph(b, PixelCrossEntropy(b, logits, labels), r, /*has_seq=*/false, /*has_image=*/true);
}

}  // namespace

// fcn.py fcn_8(encoder=get_vgg_encoder): conv2d_5 (7x7, 4096) and conv2d_6
// (1x1, 4096) with ReLU and dropout on f5, conv2d_7 to the classes, then two
// 2x stride-2 4x4 transposed convolutions (no bias), each cropped to and added
// with a 1x1 class scoring of f4 / f3, and a final 8x stride 16x16 transposed
// convolution. On H x W images the output is (H + 8) x (W + 8).
Graph BuildFcn8(const ZooRequest& r) {
  GraphBuilder b(r.model, r.dtype);
  TensorId img = b.Input("images", {r.batch, kChannels, r.image, r.width});
  const std::vector<TensorId> f = VggEncoder(b, img, 5);
  TensorId o = KerasConv(b, "conv2d_5", f[4], 4096, 7, true, true);
  o = Dropout(b, o, r.dropout);
  o = KerasConv(b, "conv2d_6", o, 4096, 1, true, true);
  o = Dropout(b, o, r.dropout);
  o = KerasConv(b, "conv2d_7", o, kClasses, 1, false, false);
  const Conv2dOptions up2 = {.stride = 2, .transposed = true};
  o = Conv2d(b, "conv2d_transpose", o, kClasses, 4, up2);
  int64_t crops = 0;
  TensorId o2 = KerasConv(b, "conv2d_8", f[3], kClasses, 1, false, false);
  Crop(b, o, o2, crops);
  o = b.Call("aten.add.Tensor", {o, o2}, {}, "add");
  o = Conv2d(b, "conv2d_transpose_1", o, kClasses, 4, up2);
  o2 = KerasConv(b, "conv2d_9", f[2], kClasses, 1, false, false);
  Crop(b, o2, o, crops);
  o = b.Call("aten.add.Tensor", {o2, o}, {}, "add_1");
  o = Conv2d(b, "conv2d_transpose_2", o, kClasses, 16, {.stride = 8, .transposed = true});
  return Finish(b, o, r);
}

// segnet.py segnet(encoder=vanilla_encoder, encoder_level=3): four encoder
// blocks (zero pad, 3x3 valid conv, BatchNorm, ReLU, 2x2 pool; 64, 128, 256,
// 256 channels), then segnet_decoder(n_up=3): 512, up, 256, up, 128, up, 64
// channel convolutions with BatchNorm and no activation, and a 3x3 'same'
// convolution to the classes. The output is H/2 x W/2.
Graph BuildSegnet(const ZooRequest& r) {
  GraphBuilder b(r.model, r.dtype);
  TensorId o = b.Input("images", {r.batch, kChannels, r.image, r.width});
  // Keras numbers every layer type in creation order; the unused fifth
  // encoder block took zero_padding2d_8 and conv2d_14.
  int64_t pad = 4, conv = 10, bn = 4, act = 2, pool = 0, up = 3;
  auto numbered = [](std::string_view base, int64_t i) {
    return i ? fmt::format("{}_{}", base, i) : std::string(base);
  };
  for (int64_t channels : {64, 128, 256, 256}) {
    o = ZeroPad(b, numbered("zero_padding2d", pad++), o);
    o = KerasConv(b, numbered("conv2d", conv++), o, channels, 3, false, false);
    o = BatchNorm2d(b, numbered("batch_normalization", bn++), o);
    o = b.Call("aten.relu", {o}, {}, numbered("activation", act++));
    o = Pool(b, numbered("max_pooling2d", pool++), o);
  }
  ++pad, ++conv, ++bn;
  const int64_t decoder[] = {512, 256, 128, 64};
  for (size_t i = 0; i < std::size(decoder); ++i) {
    if (i > 0) o = UpSample(b, numbered("up_sampling2d", up++), o);
    o = ZeroPad(b, numbered("zero_padding2d", pad++), o);
    o = KerasConv(b, numbered("conv2d", conv++), o, decoder[i], 3, false, false);
    o = BatchNorm2d(b, numbered("batch_normalization", bn++), o);
  }
  o = KerasConv(b, numbered("conv2d", conv), o, kClasses, 3, true, false);
  return Finish(b, o, r);
}

// unet.py _unet(encoder=get_vgg_encoder, l1_skip_conn=True): VGG blocks 1-4,
// then on f4 a zero-padded 3x3 valid convolution with ReLU (512) and
// BatchNorm; three times: 2x upsampling, concatenation with f3 / f2 / f1, a
// padded 3x3 ReLU convolution (256, 128, 64) and BatchNorm; finally a 3x3
// 'same' convolution to the classes. The output is H/2 x W/2.
Graph BuildVggUnet(const ZooRequest& r) {
  GraphBuilder b(r.model, r.dtype);
  TensorId img = b.Input("images", {r.batch, kChannels, r.image, r.width});
  const std::vector<TensorId> f = VggEncoder(b, img, 4);
  const int64_t widths[] = {512, 256, 128, 64};
  TensorId o = f[3];
  for (int64_t i = 0; i < 4; ++i) {
    const std::string suffix = i ? fmt::format("_{}", i) : "";
    if (i > 0) {
      o = UpSample(b, i > 1 ? fmt::format("up_sampling2d_{}", i - 1) : "up_sampling2d", o);
      o = b.Call("aten.cat", {o, f[2 - (i - 1)]}, {{"dim", int64_t{1}}},
                 i > 1 ? fmt::format("concatenate_{}", i - 1) : "concatenate");
    }
    o = ZeroPad(b, "zero_padding2d" + suffix, o);
    o = KerasConv(b, "conv2d" + suffix, o, widths[i], 3, false, true);
    o = BatchNorm2d(b, "batch_normalization" + suffix, o);
  }
  o = KerasConv(b, "conv2d_4", o, kClasses, 3, true, false);
  return Finish(b, o, r);
}

}  // namespace memfit::models
