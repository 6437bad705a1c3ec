"""Quantization: the settings (:mod:`.config`: mode, I/O, per-op rules), per-op precision plans
applied with ai-edge-quantizer (:mod:`.plan`) and the mixed-precision sensitivity search
(:mod:`.mixed_precision`, the recipe step that fills in a plan). The converter
(:mod:`edgepack.convert.tflite`) applies them.
"""
