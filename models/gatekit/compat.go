// Package gatekit is a temporary forwarder: the code that was here now
// lives in models/conf, models/errkind, models/procstat, models/imagecheck,
// models/match, models/wire and models/faceengine. It is removed as soon as
// edge/pipeline/pipeline.go (being restructured) names those packages.
package gatekit

import (
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/procstat"
	"github.com/diemdanh/diemdanh/models/wire"
)

type Affine = faceengine.Affine

var ArcFace112 = faceengine.ArcFace112
var ArcFace5 = faceengine.ArcFace5
var CalibrateThreshold = match.CalibrateThreshold
var CalibrateThresholdFor = match.CalibrateThresholdFor

type Calibration = match.Calibration

var ColorBlack = faceengine.ColorBlack

const CropTarget = faceengine.CropTarget

type Decision = match.Decision

var DecodeEvent = wire.DecodeEvent
var DecodeGallery = wire.DecodeGallery
var DecodeMat = faceengine.DecodeMat
var DecodeYAML = conf.DecodeYAML
var DefaultEmbedder = match.DefaultEmbedder
var DefaultEngineConfig = faceengine.DefaultEngineConfig
var DefaultImageLimits = imagecheck.DefaultLimits

const DefaultModelsDir = conf.DefaultModelsDir

var DefaultQualityPolicy = match.DefaultQualityPolicy

type Descriptor = match.Descriptor

var DescriptorFromBytes = match.DescriptorFromBytes

const DescriptorLen = match.DescriptorLen

type Detection = faceengine.Detection

const DirectionIn = wire.DirectionIn
const DirectionOut = wire.DirectionOut

var Distance = match.Distance

type DistanceProfile = faceengine.DistanceProfile

var DistanceProfiles = faceengine.DistanceProfiles
var Dlib5 = faceengine.Dlib5
var DlibModels = faceengine.DlibModels
var DlibNoseBaseArcFace112 = faceengine.DlibNoseBaseArcFace112
var DlibResNetV1 = match.DlibResNetV1
var DocFromGallery = wire.DocFromGallery

type Embedder = faceengine.Embedder

var EmbedderModel = faceengine.EmbedderModel
var EmbedderNames = faceengine.EmbedderNames
var EncodeJPEG = faceengine.EncodeJPEG

type Engine = faceengine.Engine
type EngineConfig = faceengine.EngineConfig

var EnvOverride = conf.EnvOverride
var ErrTruncated = imagecheck.ErrTruncated

type Error = errkind.Error
type Event = wire.Event

var EventTopic = wire.EventTopic
var ExternalONNXSpecs = faceengine.ExternalONNXSpecs

type Face = match.Face
type FaceBox = faceengine.FaceBox

var FacepluginMFNV1 = faceengine.FacepluginMFNV1

type FieldError = conf.FieldError

var Fieldf = conf.Fieldf

type Filter = match.Filter
type FusionEmbedder = faceengine.FusionEmbedder
type FusionSpec = faceengine.FusionSpec

var FusionSpecs = faceengine.FusionSpecs

type Gallery = match.Gallery
type GalleryAnnounce = wire.GalleryAnnounce
type GalleryDoc = wire.GalleryDoc

const GalleryFormat = wire.GalleryFormat

type GalleryPerson = wire.GalleryPerson

var GalleryTopic = wire.GalleryTopic

type HOGDetector = faceengine.HOGDetector
type Heartbeat = wire.Heartbeat

var HeartbeatTopic = wire.HeartbeatTopic

type IdolData = match.IdolData
type ImageInfo = imagecheck.Info
type ImageLimits = imagecheck.Limits

var IoU = faceengine.IoU

type Kind = errkind.Kind

const KindClosed = errkind.Closed
const KindCorruptImage = errkind.CorruptImage
const KindEmptyImage = errkind.EmptyImage
const KindInvalid = errkind.Invalid
const KindModelCorrupt = errkind.ModelCorrupt
const KindModelMissing = errkind.ModelMissing

var KindOf = errkind.Of

const KindTooLarge = errkind.TooLarge
const KindUnknown = errkind.Unknown
const KindUnsupported = errkind.Unsupported

var LimitMallocArenas = faceengine.LimitMallocArenas
var LoadGalleryFile = wire.LoadGalleryFile
var LoadIdols = match.LoadIdols
var LoadYAML = conf.LoadYAML

type LogConfig = conf.LogConfig

var LowerQuantile = match.LowerQuantile

type Match = match.Result

const MaxCropBytes = wire.MaxCropBytes
const MaxDescriptorLen = match.MaxDescriptorLen
const MaxDescriptorsPerPerson = wire.MaxDescriptorsPerPerson
const MaxGalleryBytes = wire.MaxGalleryBytes
const MaxGalleryPeople = wire.MaxGalleryPeople
const MaxPayloadBytes = wire.MaxPayloadBytes
const MaxYuNetSide = faceengine.MaxYuNetSide

var MeasureCrop = faceengine.MeasureCrop

type ModelFile = faceengine.ModelFile

var ModelFilesFor = faceengine.ModelFilesFor

type ModelID = match.ModelID

var ModuleRoot = conf.ModuleRoot
var NewEngine = faceengine.NewEngine
var NewEventID = wire.NewEventID
var NewFusionEmbedder = faceengine.NewFusionEmbedder
var NewGallery = match.NewGallery
var NewHOGDetector = faceengine.NewHOGDetector
var NewLogger = conf.NewLogger
var NewONNXEmbedder = faceengine.NewONNXEmbedder
var NewShapePredictor = faceengine.NewShapePredictor
var NewVoter = match.NewVoter
var NewYuNetDetector = faceengine.NewYuNetDetector

type ONNXEmbedder = faceengine.ONNXEmbedder

var ONNXModels = faceengine.ONNXModels

type ONNXSpec = faceengine.ONNXSpec

var ONNXSpecs = faceengine.ONNXSpecs
var ParseDescriptorBase64 = match.ParseDescriptorBase64
var ParseGateTopic = wire.ParseGateTopic

type Point2 = faceengine.Point2

var PoseFrom5 = faceengine.PoseFrom5
var PoseFromLandmarks = faceengine.PoseFromLandmarks
var ProcStatusMB = procstat.StatusMB
var ProfileFor = faceengine.ProfileFor
var ProfileOf = faceengine.ProfileOf

type Quality = match.Quality
type QualityPolicy = match.QualityPolicy
type QualityReason = match.QualityReason
type QualityVerdict = match.QualityVerdict

var Reason = match.Reason

const ReasonBlurry = match.ReasonBlurry
const ReasonManyFaces = match.ReasonManyFaces
const ReasonNoFace = match.ReasonNoFace
const ReasonTilted = match.ReasonTilted
const ReasonTooBright = match.ReasonTooBright
const ReasonTooDark = match.ReasonTooDark
const ReasonTooSmall = match.ReasonTooSmall
const ReasonTurned = match.ReasonTurned
const ReasonUnreadable = match.ReasonUnreadable

var ReferenceModel = faceengine.ReferenceModel
var ResolveModelsDir = conf.ResolveModelsDir
var SFace2021Dec = faceengine.SFace2021Dec
var SFace2021DecBQ = faceengine.SFace2021DecBQ
var SFace2021DecBQDlib5 = faceengine.SFace2021DecBQDlib5

const SchemaVersion = wire.SchemaVersion
const SessionAfternoon = match.SessionAfternoon

type SessionFilter = match.SessionFilter

const SessionMorning = match.SessionMorning

var Sessions = match.Sessions
var SetBLASThreads = faceengine.SetBLASThreads

type ShapePredictor = faceengine.ShapePredictor

var SimilarityTransform = faceengine.SimilarityTransform
var Sniff = imagecheck.Sniff
var SquaredL2 = match.SquaredL2

type Status = wire.Status

var StatusTopic = wire.StatusTopic

type Template3 = faceengine.Template3

var TestDataDir = conf.TestDataDir
var TestModelsDir = conf.TestModelsDir

const TopicRoot = wire.TopicRoot
const UnknownStudent = wire.UnknownStudent

var ValidID = wire.ValidID
var ValidPersonalID = wire.ValidPersonalID
var ValidSession = match.ValidSession
var ValidSessions = match.ValidSessions
var VerifyModels = faceengine.VerifyModels

type Voter = match.Voter

var WeightedSimilarity = faceengine.WeightedSimilarity
var WriteFileAtomic = conf.WriteFileAtomic
var YuNet2023MarBQ = faceengine.YuNet2023MarBQ

type YuNetDetector = faceengine.YuNetDetector

const YuNetPhotoSide = faceengine.YuNetPhotoSide
