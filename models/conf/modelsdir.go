package conf

// DefaultModelsDir is where models are looked for when no config or
// MODELS_DIR says otherwise.
const DefaultModelsDir = "models"

// ResolveModelsDir applies the MODELS_DIR environment override to dir.
func ResolveModelsDir(dir string) string {
	EnvOverride(&dir, "MODELS_DIR")
	if dir == "" {
		dir = DefaultModelsDir
	}
	return dir
}
