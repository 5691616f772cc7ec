// The native extension vid3d._C: the schemas of the kernel ops that the Python layer
// (vid3d/ops) wraps into the public autograd ops, and an empty Python module whose
// import registers them. Kernels register per backend in csrc/cpu and csrc/cuda.
// The kernel ops write into outputs that the caller allocates, so the output layout is
// decided in one place (Python) for every backend and for the fake kernels. The depthwise
// forward applies activation (None, "relu" or "relu6") to its output.
// conv2plus1d_depthwise_forward (the (2+1)D conv of a depthwise pair, fused) has a CUDA kernel
// only; the other backends run the two stages separately.
#include <Python.h>
#include <torch/library.h>

#include "cpu/depthwise_conv3d_cpu.h"

TORCH_LIBRARY(vid3d_native, m) {
  m.def(
      "depthwise_conv3d_forward(Tensor input, Tensor weight, Tensor? bias, int[3] stride, "
      "int[3] padding, int[3] dilation, Tensor(a!) output, str? activation=None) -> ()");
  m.def(
      "depthwise_conv3d_backward(Tensor grad_output, Tensor input, Tensor weight, int[3] stride, "
      "int[3] padding, int[3] dilation, Tensor(a!)? grad_input, Tensor(b!)? grad_weight, "
      "Tensor(c!)? grad_bias) -> ()");
  m.def(
      "conv2plus1d_depthwise_forward(Tensor input, Tensor spatial_weight, Tensor temporal_weight, "
      "Tensor? spatial_bias, Tensor? temporal_bias, int[3] stride, int[3] padding, int[3] dilation, "
      "str? mid_activation, Tensor(a!) output) -> ()");
  m.def("cat_shuffle3d_forward(Tensor[] inputs, int groups, Tensor(a!) output) -> ()");
  m.def("cat_shuffle3d_backward(Tensor grad_output, int groups, Tensor(a!)[] grad_inputs) -> ()");
  m.def("cpu_isa() -> str", &vid3d::cpu::cpu_isa);
}

extern "C" PyMODINIT_FUNC PyInit__C() {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "vid3d native kernels", -1, nullptr};
  PyObject* m = PyModule_Create(&module);
#if defined(VID3D_WITH_CUDA)
  const long with_cuda = 1;
#else
  const long with_cuda = 0;
#endif
  if (m != nullptr && PyModule_AddIntConstant(m, "WITH_CUDA", with_cuda) != 0) {
    Py_DECREF(m);
    return nullptr;
  }
  return m;
}
