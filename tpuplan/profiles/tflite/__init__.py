"""Reading a .tflite file: the LiteRT schema, the op graph, the safety rules."""
