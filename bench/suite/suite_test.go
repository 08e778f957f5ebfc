package main

import (
	"strings"
	"testing"

	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestAttrSize(t *testing.T) {
	for _, c := range []struct {
		v    ddbtypes.AttributeValue
		want int64
	}{
		{&ddbtypes.AttributeValueMemberS{Value: "abcd"}, 4},
		{&ddbtypes.AttributeValueMemberB{Value: make([]byte, 32)}, 32},
		{&ddbtypes.AttributeValueMemberN{Value: "12345"}, 4},
		{&ddbtypes.AttributeValueMemberBOOL{Value: true}, 1},
		{&ddbtypes.AttributeValueMemberM{Value: map[string]ddbtypes.AttributeValue{"ab": &ddbtypes.AttributeValueMemberS{Value: "xyz"}}}, 3 + 2 + 3 + 1},
		{&ddbtypes.AttributeValueMemberL{Value: []ddbtypes.AttributeValue{&ddbtypes.AttributeValueMemberS{Value: "xy"}}}, 3 + 2 + 1},
	} {
		if got := attrSize(c.v); got != c.want {
			t.Errorf("attrSize(%#v) = %d, want %d", c.v, got, c.want)
		}
	}
}

func TestCountWriteItems(t *testing.T) {
	body := `{"RequestItems":{"t1":[{"PutRequest":{}},{"DeleteRequest":{}}],"t2":[{"PutRequest":{}}]}}`
	if got, _ := writeItems([]byte(body)); got != 3 {
		t.Errorf("BatchWriteItem: %d items, want 3", got)
	}
	if got, _ := writeItems([]byte(`{"TransactItems":[{"Put":{}},{"Update":{}}]}`)); got != 2 {
		t.Errorf("TransactWriteItems: %d items, want 2", got)
	}
	if got, _ := writeItems([]byte(`not json`)); got != 0 {
		t.Errorf("garbage: %d items, want 0", got)
	}
}

func TestObjectItemWrites(t *testing.T) {
	for _, c := range []struct {
		op, body string
		want     int
	}{
		{"UpdateItem", `{"TableName":"t","Key":{"PK":{"S":"obj#0a1b"},"SK":{"S":"ver#"}}}`, 1},
		{"UpdateItem", `{"TableName":"t","Key":{"PK":{"S":"run"},"SK":{"S":"r1"}}}`, 0},
		{"PutItem", `{"TableName":"t","Item":{"PK":{"S":"obj#0a1b"},"SK":{"S":"ver#"},"t":{"S":"object"}}}`, 1},
		{"PutItem", `{"TableName":"t","Item":{"PK":{"S":"run#r1#0"},"SK":{"S":"jrn#p#1"}}}`, 0},
		{"DeleteItem", `{"TableName":"t","Key":{"PK":{"S":"obj#ff"},"SK":{"S":"ver#v1"}}}`, 1},
		{"DeleteItem", `{"TableName":"t","Key":{"PK":{"S":"lease#r1"},"SK":{"S":"all"}}}`, 0},
		{"BatchWriteItem", `{"RequestItems":{"t":[{"PutRequest":{"Item":{"PK":{"S":"obj#1"}}}},{"DeleteRequest":{"Key":{"PK":{"S":"meta"}}}},{"DeleteRequest":{"Key":{"PK":{"S":"obj#2"}}}}]}}`, 2},
		{"TransactWriteItems", `{"TransactItems":[{"Put":{"Item":{"PK":{"S":"obj#1"}}}},{"Update":{"Key":{"PK":{"S":"run"}}}},{"Delete":{"Key":{"PK":{"S":"obj#3"}}}}]}`, 2},
		{"PutItem", `not json`, 0},
	} {
		if _, got := writeItems([]byte(c.body)); got != c.want {
			t.Errorf("%s %s: %d writes on objects' items, want %d", c.op, c.body, got, c.want)
		}
	}
}

func TestRatioRange(t *testing.T) {
	rot := []Run{{Objects: 100, WallS: 1}, {Objects: 100, WallS: 2}}
	bare := []Run{{Objects: 100, WallS: 0.5}, {Objects: 100, WallS: 1}}
	agg, lo, hi := ratioRange(rot, bare)
	if agg != 0.5 || lo != 0.5 || hi != 0.5 {
		t.Errorf("ratioRange = %v, %v, %v; want 0.5 each", agg, lo, hi)
	}
}

func TestParseSizeAndInts(t *testing.T) {
	if n, err := parseSize("16MiB"); err != nil || n != 16<<20 {
		t.Errorf("parseSize(16MiB) = %d, %v", n, err)
	}
	if _, err := parseSize("-1"); err == nil {
		t.Error("parseSize(-1): no error")
	}
	if v, err := parseInts("32,128,512"); err != nil || len(v) != 3 || v[2] != 512 {
		t.Errorf("parseInts = %v, %v", v, err)
	}
}

func TestPlotHasAPointPerRun(t *testing.T) {
	res := Results{Options: Options{Conc: 32}, Scale: []ScalePoint{{Objects: 1000, ObjectsPerS: 700, PeakRSSMiB: 40}, {Objects: 100000, ObjectsPerS: 650, PeakRSSMiB: 55}}}
	svg := plot(res)
	if n := strings.Count(svg, "<circle"); n != 4 {
		t.Errorf("%d points, want 4 (two runs in two panels)", n)
	}
	if !strings.Contains(svg, "100,000") || !strings.HasSuffix(svg, "</svg>\n") {
		t.Error("the plot lacks its labels or its end")
	}
}
