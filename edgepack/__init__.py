"""edgepack: compress, convert, verify and profile Keras models for phones and microcontrollers.

Importing edgepack has no side effects and does not import TensorFlow.
"""

__version__ = "0.1.0"
