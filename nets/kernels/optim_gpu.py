"""CuPy versions of the optimizer updates, with the contract of nets/kernels/optim.py.

One elementwise kernel per rule: each element of p, its gradient and its state is read and
written once per step, in one launch (the array code in optim.py makes 5 to 12 passes and as many
launches, and a small network's GPU step is bound by launches). State vectors a configuration
does not use arrive empty and are declared `raw`, so they take no part in sizing the launch and
are never indexed. Each rule is built twice from one body ending in `p_new = p - step`, as the
Numba kernels store through `p` or `out`: in place, where it reads `p -= step` and `p` is an
output, and out of place, where `p` is an input and `p_new` the output (`out`).
"""
from __future__ import annotations

import functools

from .. import backend

# d = g + weight_decay * p + l1 * sign(p), as optim._effective.
_EFFECTIVE = """
    T d = g + (T)weight_decay * p;
    if (p > 0) d += (T)l1; else if (p < 0) d -= (T)l1;
"""
_COMMON = "T g, float32 lr, float32 weight_decay, float32 l1"


@functools.cache
def _kernels() -> dict:
    cp = backend.cupy_module()

    def kernel(name, params, outputs, body):
        """(in place, out of place) kernels of one rule; outputs start with "T p"."""
        inputs = f"{_COMMON}, {params}" if params else _COMMON
        state = outputs.removeprefix("T p")
        in_place = body.replace("p_new = p - ", "p -= ")
        return (cp.ElementwiseKernel(inputs, outputs, _EFFECTIVE + in_place, f"workbench_{name}"),
                cp.ElementwiseKernel(f"T p, {inputs}", "T p_new" + state, _EFFECTIVE + body,
                                     f"workbench_{name}_into"))

    return {
        "sgd": kernel("sgd", "float32 momentum, bool nesterov", "T p, raw T velocity", """
            if (momentum != 0) {
                const T v = (T)momentum * velocity[i] + d;
                velocity[i] = v;
                d = nesterov ? d + (T)momentum * v : v;
            }
            p_new = p - (T)lr * d;"""),
        "adagrad": kernel("adagrad", "float32 eps", "T p, T sum_sq", """
            sum_sq += d * d;
            p_new = p - (T)lr * d / (sqrt(sum_sq) + (T)eps);"""),
        "adadelta": kernel("adadelta", "float32 rho, float32 eps", "T p, T grad_sq_avg, T delta_sq_avg", """
            const T keep = (T)1 - (T)rho;
            grad_sq_avg = (T)rho * grad_sq_avg + keep * d * d;
            const T delta = sqrt(delta_sq_avg + (T)eps) / sqrt(grad_sq_avg + (T)eps) * d;
            delta_sq_avg = (T)rho * delta_sq_avg + keep * delta * delta;
            p_new = p - (T)lr * delta;"""),
        "rmsprop": kernel("rmsprop", "float32 alpha, float32 eps, bool centered, bool eps_inside_sqrt",
                          "T p, T square_avg, raw T grad_avg", """
            const T keep = (T)1 - (T)alpha;
            square_avg = (T)alpha * square_avg + keep * d * d;
            T ms = square_avg;
            if (centered) {
                const T mg = (T)alpha * grad_avg[i] + keep * d;
                grad_avg[i] = mg;
                const T variance = ms - mg * mg;
                ms = variance > (T)0 ? variance : (T)0;  // rounding can push a zero variance below 0
            }
            const T denom = eps_inside_sqrt ? sqrt(ms + (T)eps) : sqrt(ms) + (T)eps;
            p_new = p - (T)lr * d / denom;"""),
        "adam": kernel("adam", "float32 beta1, float32 beta2, float32 eps, float32 step_size, "
                       "float32 root2", "T p, T m, T v", """
            m = (T)beta1 * m + ((T)1 - (T)beta1) * d;
            v = (T)beta2 * v + ((T)1 - (T)beta2) * d * d;
            p_new = p - (T)step_size * m / (sqrt(v) / (T)root2 + (T)eps);"""),
        "sign_adaptive": kernel("sign_adaptive", "float32 increase, float32 decrease, float32 low, "
                                "float32 high", "T p, T gain, T prev_grad", """
            const T prev = prev_grad;
            T k = gain;
            if ((d > 0 && prev > 0) || (d < 0 && prev < 0)) k += (T)increase;
            else if ((d > 0 && prev < 0) || (d < 0 && prev > 0)) k *= (T)decrease;
            k = k < (T)low ? (T)low : (k > (T)high ? (T)high : k);
            gain = k;
            prev_grad = d;
            p_new = p - (T)lr * k * d;"""),
        "sum_of_squares": cp.ReductionKernel(
            "T x", "float64 total", "(double)x * (double)x", "a + b", "total = a", "0",
            "workbench_sum_of_squares"),
    }


def _update(name: str, states: int):
    """The optim.py contract, rule(p, g, out, *state, lr, weight_decay, l1, *hyper), on the
    kernels whose outputs are (p, *state) in place and (out, *state) out of place."""
    def rule(p, g, out, *args):
        state, scalars = args[:states], args[states:]
        in_place, out_of_place = _kernels()[name]
        if out is None:
            in_place(g, *scalars, p, *state)
        else:
            out_of_place(p, g, *scalars, out, *state)
    rule.__name__ = name
    return rule


sgd = _update("sgd", 1)
adagrad = _update("adagrad", 1)
adadelta = _update("adadelta", 2)
rmsprop = _update("rmsprop", 2)
adam = _update("adam", 2)
sign_adaptive = _update("sign_adaptive", 2)


def sum_of_squares(x) -> float:
    """Sum of x^2 accumulated in float64, one reduction launch."""
    return float(_kernels()["sum_of_squares"](x))
