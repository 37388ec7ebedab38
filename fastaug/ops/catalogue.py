"""The color op catalogue: op code -> fastaug.functional name and its magnitude arguments."""

from __future__ import annotations

from fastaug.plan import Op

# code -> (functional name, names of params[..., 0], params[..., 1], ...)
COLOR_OPS: dict[int, tuple[str, tuple[str, ...]]] = {
    int(Op.BRIGHTNESS): ("adjust_brightness", ("brightness_factor",)),
    int(Op.CONTRAST): ("adjust_contrast", ("contrast_factor",)),
    int(Op.SATURATION): ("adjust_saturation", ("saturation_factor",)),
    int(Op.HUE): ("adjust_hue", ("hue_factor",)),
    int(Op.GAMMA): ("adjust_gamma", ("gamma", "gain")),
    int(Op.SHARPNESS): ("adjust_sharpness", ("sharpness_factor",)),
    int(Op.GRAYSCALE): ("rgb_to_grayscale", ()),
    int(Op.INVERT): ("invert", ()),
    int(Op.POSTERIZE): ("posterize", ("bits",)),
    int(Op.SOLARIZE): ("solarize", ("threshold",)),
    int(Op.AUTOCONTRAST): ("autocontrast", ()),
    int(Op.EQUALIZE): ("equalize", ()),
}
# arguments torchvision takes as ints: listed as ints when their (float) value is integral
INTEGER_ARGS = frozenset({"bits", "top", "left", "height", "width", "i", "j", "h", "w"})
