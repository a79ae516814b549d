print("segger-train")
