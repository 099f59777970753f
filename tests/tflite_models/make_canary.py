"""Made controller/agents/canary.tflite (once, with .venv-tflite/bin/python; the file is committed):
an identity classifier (logits = x @ I), so the class of every canary input is its argmax and the
board's top-1 must be exactly 1.0."""
import sys

import numpy as np
import tensorflow as tf

x = tf.keras.Input(shape=(10,), batch_size=1, name="x")
dense = tf.keras.layers.Dense(10, use_bias=False, name="identity")
model = tf.keras.Model(x, dense(x))
dense.set_weights([np.eye(10, dtype=np.float32)])
converter = tf.lite.TFLiteConverter.from_keras_model(model)
open(sys.argv[1], "wb").write(converter.convert())
