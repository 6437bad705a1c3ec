"""TFLite conversion and flatbuffer inspection."""
