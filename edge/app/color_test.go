package app

import "image/color"

func colorGrey() color.RGBA { return color.RGBA{140, 140, 140, 0} }
